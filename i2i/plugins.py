"""Plugin discovery and loading, one plugin at a time so a broken one only disables itself.

Plugins are found through the ``i2i`` entry-point group; i2i's own (under ``plugins/``) are
listed there too. Environment switches:

``I2I_LOAD_PLUGINS``
    Comma-separated entry-point or distribution names of third-party plugins to load; empty
    loads none. Built-in plugins always load. Unset: load everything installed.
``I2I_STRICT_PLUGINS=1``
    A plugin that fails to load is an error instead of a warning (``0``, ``false``, ``no``, ``off``:
    a warning).
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any

import pluggy

from . import hookspecs
from .errors import PluginError, UserError, exception_line, show_traceback, switched_on
from .messages import say
from .registry import BUILTIN_DISTRIBUTION, KINDS, SINGULAR, Component, Registry

#: A third-party plugin slower than this to import gets a note naming it: every command waits.
SLOW_IMPORT_SECONDS = 3.0

#: What a plugin's import or hook may raise without taking i2i down: any error, and
#: ``SystemExit`` too (a plugin that calls ``sys.exit("no GPU")`` at import would otherwise end
#: every i2i command, --help included). Ctrl-C still interrupts.
PLUGIN_FAILURES = (Exception, SystemExit)

if TYPE_CHECKING:
    import click


@dataclass
class PluginInfo:
    """What ``i2i plugins`` reports for one plugin."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False
    status: str = "loaded"  # loaded | failed | skipped
    error: str | None = None
    hooks: list[str] = field(default_factory=list)
    components: dict[str, list[str]] = field(default_factory=dict)
    #: components the plugin declared but i2i refused (an option no recipe could set), each
    #: "generator 'x': why"; the plugin's other components are loaded
    refused: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The fields as ``i2i plugins --json`` prints them."""
        return dict(self.__dict__)


class PluginHost:
    """The pluggy manager, the registry it fills, and what happened to each plugin."""

    def __init__(self) -> None:
        self.manager = pluggy.PluginManager("i2i")
        self.manager.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.plugins: dict[str, PluginInfo] = {}

    # -- loading -----------------------------------------------------------------------------
    def load_entry_points(self) -> None:
        """Load every plugin of the ``i2i`` entry-point group that ``I2I_LOAD_PLUGINS`` allows.

        Built-in plugins load first, so a third-party plugin's hooks may look up their components
        (``i2i.registry("generators")["unet"]``, for a preset of it), and a third-party
        distribution cannot take over one of i2i's entry-point names; the others follow in the
        order of their names. Two third-party distributions that
        declare the same name both stay out: which one Python lists first is an accident of the
        installation, and a run trained with one must not silently get the other's components.
        """
        wanted = os.environ.get("I2I_LOAD_PLUGINS")
        allowed = None if wanted is None else {w.strip() for w in wanted.split(",") if w.strip()}
        entry_points = sorted(_entry_points(), key=lambda e: (_distribution(e)[0] != BUILTIN_DISTRIBUTION, e.name))
        claims: dict[str, list[str]] = {}
        for ep in entry_points:
            claims.setdefault(ep.name, []).append(_distribution(ep)[0] or ep.value)
        if any(_distribution(ep)[0] != BUILTIN_DISTRIBUTION for ep in entry_points):
            # plugins import torch, and the first would be timed for it (see SLOW_IMPORT_SECONDS)
            import torch  # noqa: F401
        for ep in entry_points:
            dist_name, version = _distribution(ep)
            builtin = dist_name == BUILTIN_DISTRIBUTION
            info = PluginInfo(ep.name, ep.value, dist_name, version, builtin)
            skipped = not builtin and allowed is not None and ep.name not in allowed and dist_name not in allowed
            taken = self.plugins.get(ep.name)
            if taken is not None and (taken.distribution, taken.module) == (dist_name, ep.value):
                continue  # one distribution found twice on sys.path (an editable install beside a copy)
            rivals = [d for d in dict.fromkeys(claims[ep.name]) if d != (dist_name or ep.value)]
            if taken is not None or (rivals and not builtin):  # listed under its distribution, after the first
                if taken is not None:
                    info.name = f"{ep.name} ({dist_name})"
                self.plugins[info.name] = info
                if skipped:  # left out anyway: its name clash is not this command's business
                    info.status = "skipped"
                    continue
                if taken is not None and taken.builtin:
                    why = (f"the entry-point name '{ep.name}' is taken by i2i's built-in plugin; rename the entry "
                           f"point in {dist_name}'s [project.entry-points.i2i]")
                else:
                    others = " and ".join(f"'{d}'" for d in rivals)
                    why = (f"the entry-point name '{ep.name}' is declared by {others} too, so neither is loaded (which "
                           f"to take would be a guess); uninstall one, or rename the entry point in its "
                           f"[project.entry-points.i2i]")
                self._fail(info, NameError(why))
                continue
            self.plugins[ep.name] = info
            if skipped:
                info.status = "skipped"
                self.registry.unavailable[ep.name] = "is not loaded (I2I_LOAD_PLUGINS leaves it out)"
                continue
            started = time.perf_counter()
            try:
                with plugin_output_to_stderr():
                    module = ep.load()
            except PLUGIN_FAILURES as exc:  # any import-time failure disables this plugin only
                self._fail(info, exc)
                continue
            took = time.perf_counter() - started
            if isinstance(module, type) and _hooks_need_an_instance(module):
                self._fail(info, TypeError(f"the entry point {ep.value} names the class {module.__name__}, whose hooks "
                                           "are methods; point it at the module that holds the hooks, or at an "
                                           f"instance (plugin = {module.__name__}() in that module)"), provides=module)
                continue
            if took > SLOW_IMPORT_SECONDS and not builtin:  # every command waits for it, even --version
                say(f"i2i: note: plugin '{ep.name}' ({dist_name}) took {took:.1f} s to import, which every i2i "
                    f"command waits for; I2I_LOAD_PLUGINS=NAME,... loads only the plugins named")
            self.add_plugin(module, ep.name, info=info, warn_clashes=False)
            if info.status == "loaded" and not info.hooks:  # e.g. an entry point naming a class, not the module
                say(f"i2i: warning: plugin '{ep.name}' ({dist_name}: {ep.value}) has no @i2i.hookimpl hooks, so it "
                    "registers nothing; its entry point names the module that holds them")
        self._warn_clashes()
        known = {n for p in self.plugins.values() if not p.builtin for n in (p.name, p.distribution)}
        for name in sorted((allowed or set()) - known):
            say(f"i2i: warning: I2I_LOAD_PLUGINS names '{name}', which no installed plugin has "
                f"(installed: {', '.join(sorted(p.name for p in self.plugins.values() if not p.builtin)) or 'none'})")

    def add_plugin(self, plugin: object, name: str, *, info: PluginInfo | None = None, warn_clashes: bool = True) -> PluginInfo:
        """Register a module or object with hook implementations (also used by tests and the API)."""
        info = info or PluginInfo(name, getattr(plugin, "__name__", type(plugin).__name__))
        self.plugins[name] = info
        try:
            self.manager.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:  # a hook with arguments its spec lacks
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            hint = ""
            if "can not be found in the hookspec" in str(exc):  # register_tasks(registry), say
                hint = ("; i2i's hooks take one argument each, by these names: register_commands(cli), the others "
                        "(register_tasks, ...) register")
            self._fail(info, TypeError("; ".join(lines[1:] or lines) + hint), provides=plugin)  # line 1 only names the plugin
            return info
        except PLUGIN_FAILURES as exc:  # e.g. the name is taken by another plugin object
            self._fail(info, exc, provides=plugin)
            return info
        unknown = self._unknown_hooks(name)
        if unknown:
            self.manager.unregister(name=name)
            from . import hookspecs
            from .errors import did_you_mean

            hooks = sorted(n for n in vars(hookspecs) if n.startswith("register_"))
            self._fail(info, NameError(f"unknown hook {unknown[0]!r}{did_you_mean(unknown[0], hooks)}; i2i's hooks: "
                                       f"{', '.join(hooks)}"), provides=plugin)
            return info
        unmarked = self._unmarked_hooks(plugin)
        if unmarked:  # pluggy skips them silently: the plugin would load and register nothing
            self.manager.unregister(name=name)
            self._fail(info, NameError(f"{unmarked[0]} is not marked @i2i.hookimpl, so i2i would never call it"), provides=plugin)
            return info
        info.hooks = sorted(
            h.name for h in self.manager.get_hookcallers(plugin) or [] if h.name.startswith("register_")
        )
        staged: list[Component] = []
        refused: list[tuple[str, tuple[str, ...], Exception]] = []
        self.registry.refused = {key: value for key, value in self.registry.refused.items() if value[0] != name}
        failed_in = ""  # the hook being called, named in the failure: "register_tasks: RuntimeError: ..."
        try:
            for kind in KINDS:
                for impl in getattr(self.manager.hook, f"register_{kind}").get_hookimpls():
                    if impl.plugin_name == name:
                        register = self.registry.register_function(
                            kind, name, info.distribution, info.version, sink=staged, refused=refused
                        )
                        failed_in = f"{impl.function.__name__}: "
                        with plugin_output_to_stderr():
                            returned = impl.function(**({"register": register} if impl.argnames else {}))
                        failed_in = ""
                        if returned is not None:  # pluggy would drop it: the plugin would register nothing
                            raise TypeError(f"{impl.function.__name__} returned {type(returned).__name__}; it registers "
                                            f"each {SINGULAR[kind]} by calling register(name, factory) instead")
            if refused and not staged:  # nothing usable: the plugin failed, as before any was refused
                raise refused[0][2]
        except PLUGIN_FAILURES as exc:  # a hook that raises disables its plugin, registers nothing
            self.manager.unregister(name=name)
            self._fail(info, exc, failed_in, provides=plugin)
            return info
        for component in staged:
            self.registry.add(component)
            info.components.setdefault(component.kind, []).append(component.name)
        self.registry.unavailable.pop(name, None)
        for kind, names, exc in refused:
            self._refuse(info, kind, names, exc)
        if warn_clashes:
            self._warn_clashes(name)
        return info

    def _warn_clashes(self, plugin: str | None = None) -> None:
        for component, builtin in self.registry.clashes_with_builtins(plugin):
            kind = SINGULAR[component.kind]
            say(f"i2i: warning: plugin '{component.plugin}' registers {kind} '{component.name}', which i2i's "
                f"'{builtin.plugin}' plugin also provides; recipes naming '{component.name}' get i2i's, "
                f"'{component.qualified_name}' gets the plugin's")

    def _unknown_hooks(self, name: str) -> list[str]:
        """The names of hooks a plugin implements that match no hookspec (a typo such as
        ``register_generator``)."""
        plugin = self.manager.get_plugin(name)
        return [
            caller.name
            for caller in self.manager.get_hookcallers(plugin) or []
            if caller.spec is None
            for impl in caller.get_hookimpls()
            if impl.plugin is plugin and not impl.optionalhook
        ]

    def _unmarked_hooks(self, plugin: object) -> list[str]:
        """Functions named like a hook (``register_generators``) without ``@i2i.hookimpl``."""
        return [
            hook for hook in sorted(vars(hookspecs)) if hook.startswith("register_")
            and callable(getattr(plugin, hook, None)) and self.manager.parse_hookimpl_opts(plugin, hook) is None
        ]

    def _fail(self, info: PluginInfo, exc: BaseException, where: str = "", provides: object = None) -> None:
        """The plugin is disabled; ``where`` (``"register_tasks: "``) names the hook that failed.
        ``provides``: the plugin's module or object when it was imported, whose ``register_*``
        hooks say which kinds of component it could be the missing source of."""
        info.status = "failed"
        info.error = where + exception_line(exc)
        self.registry.unavailable[info.name] = f"failed to load ({info.error})"
        self.registry.failed_kinds[info.name] = (
            None if provides is None else frozenset(k for k in KINDS if callable(getattr(provides, f"register_{k}", None))))
        origin = f"{info.distribution}: {info.module}" if info.distribution and not info.builtin else info.module
        self._warn(f"plugin '{info.name}' ({origin}) disabled: {info.error}", exc)  # the package to fix or uninstall

    def _refuse(self, info: PluginInfo, kind: str, names: tuple[str, ...], exc: Exception) -> None:
        """One component the plugin declared unusably: left out, named, the rest of it loaded."""
        said = str(exc).strip().splitlines()[0]  # "generator 'x': option 'width' defaults to ..."
        info.refused.append(said)
        why = said.removeprefix(f"{SINGULAR[kind]} '{names[0]}': ")
        for each in names:
            self.registry.refused[(kind, each)] = (info.name, why)
        self._warn(f"plugin '{info.name}' ({info.module}): {said}; {SINGULAR[kind]} '{names[0]}' is left out, the "
                   "plugin's other components are loaded", exc)

    def _warn(self, message: str, exc: BaseException) -> None:
        """A plugin's failure on stderr (with its traceback under ``I2I_TRACEBACK=1``, for the
        plugin's author), or a :class:`PluginError` under ``I2I_STRICT_PLUGINS``."""
        if show_traceback():
            import traceback

            traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        if strict_plugins():
            raise PluginError(f"{message} (I2I_STRICT_PLUGINS is set; i2i plugins lists every failure)")
        say(f"i2i: warning: {message}")

    def add_commands(self, cli: click.Group) -> None:
        """Let plugins add CLI commands; a failing one is reported and skipped. A command that
        would replace an existing one (``i2i run``, or another plugin's) is not added: the
        existing one stays, and a warning says so."""
        owners = cli.__dict__.setdefault("_i2i_command_plugins", {})  # name -> plugin, across calls
        for impl in self.manager.hook.register_commands.get_hookimpls():
            before = dict(cli.commands)
            try:
                with plugin_output_to_stderr():
                    impl.function(**({"cli": cli} if impl.argnames else {}))
            except PLUGIN_FAILURES as exc:  # none of its commands are added; its components stay
                cli.commands.clear()
                cli.commands.update(before)
                info = self.plugins[impl.plugin_name]
                info.error = f"its commands are left out: {exception_line(exc)}"
                self._warn(f"plugin '{info.name}' ({info.module}): register_commands failed, so none of its commands "
                           f"are added (its other components stay available): {exception_line(exc)}", exc)
            for name in cli.commands.keys() - before.keys():
                owners[name] = impl.plugin_name
                _report_failures_in_one_line(cli.commands[name], name, impl.plugin_name)
            for name, command in before.items():
                if cli.commands.get(name) is not command and owners.get(name) != impl.plugin_name:
                    cli.commands[name] = command
                    if name in owners:
                        kept = f"plugin '{owners[name]}' already provides; 'i2i {name}' stays the one from plugin " \
                               f"'{owners[name]}' (one of the two should rename it)"
                    else:
                        kept = f"i2i itself provides; 'i2i {name}' stays i2i's own (the plugin should rename its command)"
                    say(f"i2i: warning: plugin '{impl.plugin_name}' registers a command 'i2i {name}', which {kept}")


def plugin_output_to_stderr() -> contextlib.AbstractContextManager:
    """What a plugin prints while i2i loads it goes to stderr: stdout carries i2i's own output
    (``--json`` included), which a greeting printed at import would corrupt for every command."""
    return contextlib.redirect_stdout(sys.stderr)


def _report_failures_in_one_line(command: click.Command, name: str, plugin: str) -> None:
    """What a plugin command's own code raises becomes one line naming the command and its
    plugin (``I2I_TRACEBACK=1`` shows the traceback), as other plugin failures do; its
    ``UserError``, click's usage errors and exits pass unchanged."""
    import click

    from .errors import PluginError

    invoke = command.invoke

    def invoke_reporting(ctx: click.Context) -> Any:
        try:
            return invoke(ctx)
        except (UserError, click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            if getattr(exc, "i2i_callback_failure", None) is not None:  # a training it ran: already one line
                raise
            from .paths import path_problem

            if path_problem(exc) is not None:  # a path the user typed, not the plugin's bug: said as such
                raise UserError(path_problem(exc)) from exc
            if isinstance(exc, PermissionError) and exc.filename:  # the user's file: the command line says it as such
                raise
            raise PluginError(f"command 'i2i {name}' (plugin '{plugin}') failed: {exception_line(exc)}; report this "
                              "to the plugin's author (I2I_TRACEBACK=1 shows where)") from exc

    command.invoke = invoke_reporting  # type: ignore[method-assign]


def _distribution(ep) -> tuple[str | None, str | None]:
    """The name and version of the distribution that declares an entry point."""
    dist = getattr(ep, "dist", None)
    return (dist.metadata["Name"], dist.version) if dist is not None else (None, None)


def _entry_points() -> list[metadata.EntryPoint]:
    eps = metadata.entry_points()
    if hasattr(eps, "select"):
        return list(eps.select(group="i2i"))
    return list(eps.get("i2i", []))  # pragma: no cover - Python < 3.10 API


_host: PluginHost | None = None


def strict_plugins() -> bool:
    """``I2I_STRICT_PLUGINS``: on unless unset or one of ``0``, ``false``, ``no``, ``off``."""
    return switched_on("I2I_STRICT_PLUGINS")


#: Held while the host loads: another thread's first call waits for the whole registry (it got
#: an empty one, and 'unknown task'), while a plugin's hook in the loading thread may look up
#: components already registered (a preset of a built-in network)
_host_lock = threading.RLock()
_loading: PluginHost | None = None


def host() -> PluginHost:
    """The process-wide plugin host, loaded on first use (by one thread; the others wait)."""
    global _host, _loading
    if _host is not None:
        return _host
    with _host_lock:
        if _host is not None:
            return _host
        if _loading is not None:  # this thread, from a plugin's hook while it loads
            return _loading
        _loading = PluginHost()
        try:
            _loading.load_entry_points()
            _host = _loading
        finally:
            _loading = None
    return _host


def reset() -> None:
    """Forget loaded plugins (tests; or after installing a plugin in a running process)."""
    global _host
    with _host_lock:
        _host = None


def registry() -> Registry:
    """The components of every loaded plugin (loading them on first use)."""
    return host().registry


def _hooks_need_an_instance(cls: type) -> bool:
    """Whether a class's ``@i2i.hookimpl`` functions are methods (take ``self``): pluggy would
    call them without one."""
    for value in vars(cls).values():
        if callable(value) and getattr(value, "i2i_impl", None) is not None:
            params = list(inspect.signature(value).parameters)
            if params and params[0] == "self":
                return True
    return False


def register_plugin(plugin: object, name: str | None = None) -> PluginInfo:
    """Load a plugin object or module in this process, e.g. from a test or a notebook.

    Registering the module that an installed entry point already loaded under ``name`` changes
    nothing; another object under a taken name replaces that plugin (a test's local version).
    """
    if plugin is None or isinstance(plugin, (str, bytes, int, float)):
        hint = "; import it and pass the module" if isinstance(plugin, str) else ""
        raise TypeError(f"register_plugin takes a module or an object with @i2i.hookimpl functions, "
                        f"not {plugin!r}{hint}")
    if isinstance(plugin, type) and _hooks_need_an_instance(plugin):
        raise TypeError(f"register_plugin takes an instance of {plugin.__name__}, whose hooks are methods: "
                        f"i2i.register_plugin({plugin.__name__}(){f', {name!r}' if isinstance(name, str) else ''})")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"register_plugin(plugin, name): name is a string, not {name!r}")
    if name is not None and (not name or ":" in name):
        raise ValueError(f"register_plugin(plugin, name): name {name!r} must be non-empty and without ':' "
                         "(components are named 'plugin:name')")
    current = host()
    name = name or getattr(plugin, "__name__", type(plugin).__name__)
    taken = current.plugins.get(name)
    if taken is not None and taken.builtin:
        raise UserError(f"plugin name '{name}' is i2i's built-in plugin; register yours under another name")
    other = current.manager.get_name(plugin)
    if other is not None and other != name:
        raise UserError(f"{getattr(plugin, '__name__', type(plugin).__name__)} is already registered as plugin "
                        f"'{other}'; one object registers under one name (its components are '{other}:NAME')")
    loaded = current.manager.get_plugin(name)
    if loaded is plugin:
        return current.plugins[name]
    if loaded is not None:
        current.manager.unregister(name=name)
        current.registry.remove_plugin(name)
    # an object is shown as its class called, which is also how a program registers it again
    info = PluginInfo(name, getattr(plugin, "__name__", f"{type(plugin).__name__}()"),
                      taken.distribution if taken else None, taken.version if taken else None)
    info = current.add_plugin(plugin, name, info=info)
    if info.status == "loaded" and not info.hooks:
        say(f"i2i: warning: plugin '{name}' ({info.module}) has no @i2i.hookimpl hooks, so it registers nothing")
    return info
