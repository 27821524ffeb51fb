"""Registries of components by kind and name, filled by plugins through their hooks."""

from __future__ import annotations

import fnmatch
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import UnknownComponentError, UserError, did_you_mean
from .options import Option, accepts_any_option, factory_options, representable, takes_arguments

#: The distribution whose plugins (under ``plugins/``) are i2i's own.
BUILTIN_DISTRIBUTION = "i2i"
KINDS = ("generators", "discriminators", "tasks", "losses", "metrics", "callbacks")
SINGULAR = {kind: "loss" if kind == "losses" else kind[:-1] for kind in KINDS}
#: The recipe table each kind's options come from (a loss term's is ``losses.<label>``).
#: The arguments i2i passes a factory before the recipe's options, by kind (see ``build_component``).
SUPPLIED_ARGUMENTS = {"generators": ("in_channels", "out_channels"), "discriminators": ("in_channels",)}
RECIPE_SECTIONS = {"generators": "generator", "discriminators": "discriminator", "tasks": "task", "losses": "losses.x"}


@dataclass(frozen=True)
class Component:
    """A registered factory, with where it came from."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    distribution: str | None = None
    version: str | None = None
    description: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def builtin(self) -> bool:
        """From i2i's own plugins: its bare name wins a clash (see :meth:`Registry.get`)."""
        return self.distribution == BUILTIN_DISTRIBUTION

    @property
    def qualified_name(self) -> str:
        """``plugin:name``, the spelling that stays unambiguous when two plugins share a name."""
        return f"{self.plugin}:{self.name}"

    @property
    def options(self) -> dict[str, Option]:
        """Recipe options, with this name's defaults (e.g. ``unet_256`` sets ``depth = 8``)."""
        options = factory_options(self.factory)
        for key, value in self.defaults.items():
            if key in options:
                options[key] = Option(key, options[key].annotation, value)
        return options

    @property
    def open_ended(self) -> bool:
        """True when the factory takes ``**options``, so unknown keys cannot be rejected."""
        return accepts_any_option(self.factory)

    def build(self, *args: Any, **options: Any) -> Any:
        """Call the factory; the recipe's options override this name's ``defaults``."""
        return self.factory(*args, **{**self.defaults, **options})

    @property
    def doc(self) -> str:
        """The factory's whole docstring (``description`` defaults to its first line)."""
        return own_doc(self.factory)


def own_doc(factory: Callable[..., Any]) -> str:
    """A factory's own docstring: a class without one would otherwise show its base class's
    (``i2i.Callback``'s "Override the events you need...") as its description."""
    text = vars(factory).get("__doc__") if inspect.isclass(factory) else getattr(factory, "__doc__", None)
    return inspect.cleandoc(text) if isinstance(text, str) else ""


def first_line(text: str | None) -> str:
    """The first line of a docstring: a component's description when it gives none."""
    return (text or "").strip().splitlines()[0].strip() if (text or "").strip() else ""


def check_declared_options(kind: str, name: str, factory: Callable[..., Any], defaults: dict[str, Any]) -> None:
    """At registration, what a recipe could never get right: an option named like its table's
    own keys, a default that is not of the option's declared type (the run's recipe.toml would
    keep it, and every later load refuse it), and ``defaults`` for options the factory lacks."""
    from .options import format_value, required_parameters
    from .recipe import table_keys

    singular = SINGULAR[kind]
    supplied = SUPPLIED_ARGUMENTS.get(kind, ())
    if supplied and not takes_arguments(factory, len(supplied)):  # it would fail only when a recipe builds it
        raise TypeError(f"{singular} '{name}': {getattr(factory, '__name__', 'the factory')} cannot take "
                        f"{' and '.join(supplied)}, which i2i passes first, by position "
                        f"(factory({', '.join(supplied)}, **options)); make them its first parameters")
    required = required_parameters(factory)
    for key in required[len(supplied):]:
        if key not in defaults:  # i2i never passes it, and a recipe cannot set a parameter without a default
            if kind == "metrics" and key in ("output", "target"):  # the metric function, registered itself
                fname = getattr(factory, "__name__", "the function")
                raise TypeError(f"metric '{name}': {fname} takes the images ('{key}'), so it is the metric function "
                                f"itself; register a factory that returns it, e.g. register('{name}', lambda: {fname})")
            passes = f"it passes {' and '.join(supplied)}, then the recipe's options" if supplied else "it passes only the recipe's options"
            hint = " (a metric is registered by a factory that returns the metric function)" if kind == "metrics" else ""
            raise TypeError(f"{singular} '{name}': {getattr(factory, '__name__', 'the factory')} needs '{key}', which i2i "
                            f"never passes ({passes}); give '{key}' a default, which a recipe can then change, or register "
                            f"it with defaults={{'{key}': ...}}{hint}")
    if kind not in RECIPE_SECTIONS:
        return
    reserved = table_keys(RECIPE_SECTIONS[kind])  # an option of one of these names could never be set
    options = factory_options(factory)
    for key in sorted(reserved & options.keys()):
        raise ValueError(f"{singular} '{name}': option '{key}' has the name of the recipe table's own "
                         f"'{key}' key, so a recipe could never set it; rename the option")
    for key, option in options.items():
        if representable(option.default) and not option.check(option.default):
            raise TypeError(f"{singular} '{name}': option '{key}' defaults to {format_value(option.default)}, "
                            f"which is not {option.type_name} as its annotation says")
    for key, value in defaults.items():
        option = options.get(key)
        if option is None:
            if accepts_any_option(factory):
                continue
            raise ValueError(f"{singular} '{name}': defaults names '{key}', which is not an option of "
                             f"{getattr(factory, '__name__', factory)}{did_you_mean(key, options)} "
                             f"(options: {', '.join(sorted(options)) or 'none'})")
        if not option.check(value):
            raise TypeError(f"{singular} '{name}': defaults gives {key} = {format_value(value)}, which is not "
                            f"{option.type_name}")


#: Names the reference pix2pix/CycleGAN code gives what i2i names otherwise (its --netD, --gan_mode,
#: --model values), with what to write here: "wgangp" was met with "did you mean 'wgan'?", which
#: is right but looked like a guess (the reference defines a gradient penalty and never calls it).
REFERENCE_NAMES = {
    ("losses", "wgangp"): " (the reference's wgangp is name = 'wgan': its pix2pix and CycleGAN never add the gradient "
                          "penalty; a [losses.gp] term with weight = 10 beside it does)",
    ("tasks", "pix2pix"): " (pix2pix's training on pairs is task 'paired'; 'gray2color', 'denoise' and others make "
                          "their own pairs)",
    ("tasks", "cyclegan"): " (i2i does not train CycleGAN's unpaired setting; its trained generators import with "
                           "i2i import-weights --task paired)",
    ("discriminators", "basic"): " (the reference's basic is 'patchgan')",
    ("discriminators", "n_layers"): " (the reference's n_layers is 'patchgan' with n_layers)",
    ("discriminators", "pixel"): " (the reference's pixel is 'pixelgan')",
}


class Registry:
    """All components of all kinds. Names may be qualified as ``plugin:name``."""

    def __init__(self) -> None:
        self._by_kind: dict[str, dict[str, list[Component]]] = {kind: {} for kind in KINDS}
        #: plugins that registered nothing, and why ("failed to load: ...", "skipped by ...")
        self.unavailable: dict[str, str] = {}
        #: failed plugin -> the kinds its hooks register (None: it failed before its hooks were seen)
        self.failed_kinds: dict[str, frozenset[str] | None] = {}
        #: (kind, name) -> (plugin, why) for components a loaded plugin declared unusably
        self.refused: dict[tuple[str, str], tuple[str, str]] = {}

    def add(self, component: Component) -> None:
        """Add a component; one from the same plugin under the same name is replaced (a plugin
        registered again), one from another plugin is kept beside it (a clash)."""
        entries = self._by_kind[component.kind].setdefault(component.name, [])
        entries[:] = [c for c in entries if c.plugin != component.plugin]
        entries.append(component)

    def remove_plugin(self, plugin: str) -> None:
        """Forget every component a plugin registered (it is being replaced)."""
        for by_name in self._by_kind.values():
            for name in list(by_name):
                by_name[name] = [c for c in by_name[name] if c.plugin != plugin]
                if not by_name[name]:
                    del by_name[name]

    def register_function(
        self, kind: str, plugin: str, distribution: str | None = None, version: str | None = None,
        sink: list[Component] | None = None, refused: list[tuple[str, tuple[str, ...], Exception]] | None = None,
    ) -> Callable[..., None]:
        """The ``register`` callable handed to a plugin's ``register_<kind>`` hook.

        With ``sink``, components are collected there instead of added, so a hook that raises
        halfway registers nothing (see :meth:`i2i.plugins.PluginHost.add_plugin`). With
        ``refused``, a component whose declared options no recipe could use (see
        :func:`check_declared_options`) is left out and listed there as (kind, its names, the
        error), rather than raising: the plugin's other components still load.
        """

        def register(
            name: str,
            factory: Callable[..., Any],
            *,
            description: str | None = None,
            aliases: tuple[str, ...] | list[str] = (),
            defaults: dict[str, Any] | None = None,
            **unknown: Any,
        ) -> None:
            if unknown:
                key = next(iter(unknown))
                raise TypeError(f"register({name!r}, ...) got an unknown keyword '{key}'"
                                f"{did_you_mean(key, ['description', 'aliases', 'defaults'])}; it takes "
                                "description, aliases and defaults")
            if isinstance(aliases, str):
                raise TypeError(f"{SINGULAR[kind]} {name!r}: aliases is a list of names, not the string {aliases!r}")
            for each in (name, *aliases):
                if not isinstance(each, str) or not each or ":" in each:
                    raise ValueError(f"invalid {SINGULAR[kind]} name {each!r} (a name is a non-empty string without ':')")
            if not callable(factory):
                raise TypeError(f"{SINGULAR[kind]} {name!r}: factory is not callable")
            try:
                check_declared_options(kind, name, factory, dict(defaults or {}))
            except (TypeError, ValueError) as exc:
                if refused is None:
                    raise
                refused.append((kind, (name, *aliases), exc))
                return
            desc = description or first_line(own_doc(factory))
            for each in (name, *aliases):
                if sink is not None and any(c.kind == kind and c.name == each for c in sink):
                    raise ValueError(f"{SINGULAR[kind]} '{each}' is registered twice")
                component = Component(kind, each, factory, plugin, distribution, version, desc, dict(defaults or {}))
                (sink.append(component) if sink is not None else self.add(component))

        # ``**unknown`` only turns a misspelt keyword into a message: not part of the interface
        signature = inspect.signature(register)
        register.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD])
        return register

    def names(self, kind: str) -> list[str]:
        """The registered names of a kind, sorted (qualified names are not listed)."""
        return sorted(self._by_kind[kind])

    def providers(self, kind: str, name: str) -> list[Component]:
        """The components registered under the bare ``name`` (several when plugins clash)."""
        return list(self._by_kind[kind].get(name, []))

    def components(self, kind: str, pattern: str | None = None) -> list[Component]:
        """Every component of a kind (each plugin's, when several share a name), by name;
        ``pattern`` is a shell-style filter such as ``'unet*'``."""
        out = []
        qualified = pattern is not None and ":" in pattern  # 'example:*' matches plugin:name; 'l*' bare names only
        for name in self.names(kind):
            out.extend(c for c in self._by_kind[kind][name]
                       if not pattern or fnmatch.fnmatch(c.qualified_name if qualified else name, pattern))
        return out

    def get(self, kind: str, name: str, prefer: str | None = None) -> Component:
        """Look a component up by name or ``plugin:name``; clear errors for typos and clashes.
        ``prefer``: the plugin whose component a bare name several plugins provide means (a
        task's own plugin, for the metrics the task lists), before the built-in one."""
        singular = SINGULAR[kind]
        plugin, _, bare = name.rpartition(":")
        entries = self._by_kind[kind].get(bare, [])
        if plugin:
            entries = [c for c in entries if c.plugin == plugin]
        if not entries:
            refused_by, why = self.refused.get((kind, bare), (None, ""))
            if refused_by is not None and plugin in ("", refused_by):
                raise UnknownComponentError(f"unknown {singular} '{name}': plugin '{refused_by}' declares it, but i2i "
                                            f"refused it when the plugin loaded ({why}); see 'i2i plugins'")
            if plugin in self.unavailable:
                raise UnknownComponentError(f"unknown {singular} '{name}': plugin '{plugin}' {self.unavailable[plugin]}; see 'i2i plugins'")
            hint = REFERENCE_NAMES.get((kind, bare.lower()), "") or did_you_mean(bare, self._by_kind[kind])
            failed = sorted(p for p, why in self.unavailable.items() if why.startswith("failed")
                            and self._might_provide(p, kind))
            if len(failed) == 1 and not REFERENCE_NAMES.get((kind, bare.lower())):  # the likeliest cause, with its error
                hint += (f"; plugin '{failed[0]}' {self.unavailable[failed[0]]}, and may be what provides it (see "
                         "'i2i plugins')")
            elif failed and not REFERENCE_NAMES.get((kind, bare.lower())):  # no guessing which: their errors are listed there
                listed = ", ".join(f"'{p}'" for p in failed[:3]) + (f" and {len(failed) - 3} more" if len(failed) > 3 else "")
                hint += f"; plugins {listed} failed to load, and one may be what provides it (see 'i2i plugins')"
            elif not hint and self.unavailable:
                names = [repr(p) for p in sorted(self.unavailable)]
                listed = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
                hint = f" (perhaps from a plugin that is not loaded: {listed}; see 'i2i plugins')"
            raise UnknownComponentError(f"unknown {singular} '{name}'{hint}; see 'i2i list {kind}'", guess=hint)
        if len(entries) > 1 and not plugin:
            own = [c for c in entries if c.plugin == prefer]
            if own:
                return own[0]
            # A plugin that reuses a built-in name must not change what shipped recipes and
            # existing runs mean: the bare name stays the built-in's (see clashes_with_builtins).
            builtins = [c for c in entries if c.builtin]
            if len(builtins) == 1:
                return builtins[0]
        if len(entries) > 1:
            who = " and ".join(f"'{c.qualified_name}'" for c in entries)
            raise UserError(
                f"{singular} '{bare}' is provided by several plugins: {who}; name one of them"
            )
        return entries[0]

    def _might_provide(self, plugin: str, kind: str) -> bool:
        """Whether a failed plugin could be the missing source of a ``kind``: one imported
        without a ``register_<kind>`` hook is not (one that failed to import may be)."""
        kinds = self.failed_kinds.get(plugin)
        return kinds is None or kind in kinds

    def clashes_with_builtins(self, plugin: str | None = None) -> list[tuple[Component, Component]]:
        """(plugin's component, built-in it shadows) pairs, for the load-time warning."""
        pairs = []
        for kind in KINDS:
            for entries in self._by_kind[kind].values():
                builtins = [c for c in entries if c.builtin]
                pairs += [(c, builtins[0]) for c in entries
                          if builtins and not c.builtin and (plugin is None or c.plugin == plugin)]
        return pairs

    def build(self, kind: str, name: str, /, *args: Any, **options: Any) -> Any:  # an option may be called 'kind'
        """Look ``name`` up as :meth:`get` does and build it."""
        return self.get(kind, name).build(*args, **options)
