"""Plugin discovery through entry points, failure isolation, and the registry's name rules."""

import inspect
import json
import re
import shlex
import sys
import types

if sys.version_info >= (3, 11):
    import tomllib
else:  # tomli is the dependency pyproject declares for 3.10
    import tomli as tomllib

import pytest

import i2i
from i2i import hookspecs
from i2i.errors import UnknownComponentError, UserError
from i2i.plugins import PluginHost
from plugin_env import ROOT, doc_files, make_distribution, run_i2i

GOOD = '''
import i2i
from torch import nn

def blur_net(in_channels: int, out_channels: int, *, width: int = 4) -> nn.Module:
    """A one-layer net from a third-party plugin."""
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)

@i2i.hookimpl
def register_generators(register):
    register("blurnet", blur_net)
'''

BROKEN_IMPORT = "import i2i\nimport no_such_module_anywhere\n"
BROKEN_HOOK = '''
import i2i
@i2i.hookimpl
def register_losses(register):
    raise RuntimeError("boom in hook")
'''
MISNAMED_HOOK = '''
import i2i
@i2i.hookimpl
def register_generator(register):   # missing the final "s"
    pass
'''


@pytest.fixture
def site(tmp_path):
    site = tmp_path / "site"
    make_distribution(site, "i2i-good", "1.2.3", {"good": "i2i_good"}, {"i2i_good.py": GOOD})
    make_distribution(site, "i2i-badimport", "0.1", {"badimport": "i2i_badimport"}, {"i2i_badimport.py": BROKEN_IMPORT})
    make_distribution(site, "i2i-badhook", "0.1", {"badhook": "i2i_badhook"}, {"i2i_badhook.py": BROKEN_HOOK})
    make_distribution(site, "i2i-misnamed", "0.1", {"misnamed": "i2i_misnamed"}, {"i2i_misnamed.py": MISNAMED_HOOK})
    return site


def test_entry_point_plugins_load_and_broken_ones_are_isolated(site):
    result = run_i2i(["plugins", "--json"], site)
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert plugins["good"]["status"] == "loaded"
    assert plugins["good"]["version"] == "1.2.3"
    assert plugins["good"]["distribution"] == "i2i-good"
    assert plugins["good"]["components"] == {"generators": ["blurnet"]}
    assert plugins["nets"]["builtin"] and plugins["nets"]["status"] == "loaded"
    for name, error in [("badimport", "ModuleNotFoundError"), ("badhook", "register_losses: RuntimeError: boom in hook"), ("misnamed", "register_generator")]:
        assert plugins[name]["status"] == "failed"
        assert error in plugins[name]["error"]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("i2i: warning: plugin")]
    assert len(warnings) == 3
    assert "Traceback" not in result.stderr

    listed = run_i2i(["list", "generators"], site)
    assert listed.returncode == 0
    assert re.search(r"^blurnet  \[good\]  A one-layer net from a third-party plugin\.", listed.stdout, re.M)
    assert "width = 4  (an integer)" in listed.stdout


EXITING_IMPORT = "import sys\nsys.exit('i2i-exiting needs a GPU')\n"
FAILING_COMMANDS = '''
import i2i
from torch import nn

@i2i.hookimpl
def register_generators(register):
    register("cmdnet", lambda in_channels, out_channels: nn.Conv2d(in_channels, out_channels, 1))

@i2i.hookimpl
def register_commands(cli):
    raise RuntimeError("commands hook broke")
'''


def test_a_plugin_that_exits_or_whose_commands_fail_takes_nothing_else_down(tmp_path):
    """sys.exit() in a plugin's import used to end every i2i command (--help included) with
    its message alone; a failing register_commands said the plugin was disabled while its
    generator stayed in use."""
    site = tmp_path / "site"
    make_distribution(site, "i2i-good", "1.2.3", {"good": "i2i_good"}, {"i2i_good.py": GOOD})
    make_distribution(site, "i2i-exiting", "0.1", {"exiting": "i2i_exiting"}, {"i2i_exiting.py": EXITING_IMPORT})
    make_distribution(site, "i2i-cmdfail", "0.1", {"cmdfail": "i2i_cmdfail"}, {"i2i_cmdfail.py": FAILING_COMMANDS})
    result = run_i2i(["plugins", "--json"], site)
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert plugins["good"]["status"] == "loaded"
    assert plugins["exiting"]["status"] == "failed" and plugins["exiting"]["error"] == "SystemExit: i2i-exiting needs a GPU"
    assert plugins["cmdfail"]["status"] == "loaded" and plugins["cmdfail"]["components"] == {"generators": ["cmdnet"]}
    assert plugins["cmdfail"]["error"] == "its commands are left out: RuntimeError: commands hook broke"
    assert result.stderr.splitlines() == [
        "i2i: warning: plugin 'exiting' (i2i-exiting: i2i_exiting) disabled: SystemExit: i2i-exiting needs a GPU",
        "i2i: warning: plugin 'cmdfail' (i2i_cmdfail): register_commands failed, so none of its commands are added "
        "(its other components stay available): RuntimeError: commands hook broke",
    ]
    # I2I_TRACEBACK=1 shows the plugin's author where it failed, beside the same warning
    traced = run_i2i(["list", "tasks"], site, env={"I2I_TRACEBACK": "1"})
    assert traced.returncode == 0
    assert "Traceback (most recent call last)" in traced.stderr and 'i2i_exiting.py", line 2' in traced.stderr


def test_strict_mode_turns_plugin_failures_into_errors(site):
    result = run_i2i(["list", "generators"], site, env={"I2I_STRICT_PLUGINS": "1"})
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "disabled" in result.stderr and "I2I_STRICT_PLUGINS" in result.stderr
    # what a user runs to see why still runs, with the failure as a warning
    for args in (["--help"], ["run", "--help"], ["plugins", "--json"]):
        described = run_i2i(args, site, env={"I2I_STRICT_PLUGINS": "1"})
        assert described.returncode == 0, (args, described.stderr)
        assert "i2i: warning: plugin 'badimport'" in described.stderr
    assert json.loads(described.stdout) and "failed" in {p["status"] for p in json.loads(described.stdout)}
    for off in ("0", "false", "No", "off", ""):
        assert run_i2i(["list", "generators"], site, env={"I2I_STRICT_PLUGINS": off}).returncode == 0, off


def test_load_plugins_switch_limits_third_party_plugins(site):
    result = run_i2i(["plugins", "--json"], site, env={"I2I_LOAD_PLUGINS": "good"})
    plugins = {p["name"]: p["status"] for p in json.loads(result.stdout)}
    assert plugins["good"] == "loaded"
    assert plugins["badimport"] == plugins["badhook"] == plugins["misnamed"] == "skipped"
    assert plugins["nets"] == "loaded"  # built-ins always load
    assert result.stderr == ""
    none = run_i2i(["plugins", "--json"], site, env={"I2I_LOAD_PLUGINS": ""})
    assert {p["name"]: p["status"] for p in json.loads(none.stdout)}["good"] == "skipped"


PLUGINS_MD = ROOT / "docs" / "plugins.md"


def doc_blocks(language: str) -> list[str]:
    """The fenced ``language`` blocks of docs/plugins.md that are no file of the example package."""
    text = re.sub(r"<!-- file: \S+ -->\s*```\w*\n.*?```", "", PLUGINS_MD.read_text(), flags=re.S)
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def test_documented_example_plugin_works_end_to_end(tmp_path):
    """The plugin in docs/plugins.md, copied verbatim, installs, lists, trains and passes its own test;
    the commands the page shows run as shown."""
    files = doc_files(PLUGINS_MD)
    project = tomllib.loads(files["pyproject.toml"])["project"]
    site = tmp_path / "site"
    make_distribution(site, project["name"], project["version"], project["entry-points"]["i2i"],
                      {"i2i_example/__init__.py": files["i2i_example/__init__.py"]})
    assert project["entry-points"]["i2i"] == {"example": "i2i_example"}
    (tmp_path / "recipe.toml").write_text(files["recipe.toml"])

    plugins = {p["name"]: p for p in json.loads(run_i2i(["plugins", "--json"], site).stdout)}
    assert plugins["example"]["version"] == project["version"] and plugins["example"]["distribution"] == project["name"]
    assert set(plugins["example"]["components"]) == {"generators", "tasks", "losses", "metrics"}

    [console] = doc_blocks("console")
    commands = [shlex.split(line[2:]) for line in console.splitlines() if line.startswith("$ ")]
    assert [c[:2] for c in commands] == [["i2i", "plugins"], ["i2i", "list"], ["i2i", "run"]]
    for command in commands:
        result = run_i2i(command[1:], site, cwd=tmp_path)
        assert result.returncode == 0 and result.stderr == "", f"{command}\n{result.stderr}"
        if command[1] == "plugins":
            assert re.search(r"^example  \(i2i_example; i2i-example 0\.3\.0; third-party\)  loaded", result.stdout, re.M)
        if command[1] == "list":
            assert "tiny  [example]" in result.stdout and "width = 16  (an integer)" in result.stdout
    assert (tmp_path / "runs" / "invert" / "checkpoints" / "LATEST").is_file()
    evals = [json.loads(line) for line in (tmp_path / "runs" / "invert" / "metrics.jsonl").read_text().splitlines()
             if '"eval"' in line]
    assert 0 <= evals[-1]["metrics"]["worst_error"] <= 1  # the example's metric, scored at the run's evaluation
    assert evals[-1]["baselines"]["identity"]["worst_error"] > 0.5  # its baseline: the input, far from its negative

    # the option mistakes the page describes: a misspelt option, and a value the factory refuses
    typo = run_i2i(["validate", "recipe.toml", "--set", "generator.widht=8"], site, cwd=tmp_path)
    assert typo.returncode == 2 and "generator.widht: unknown option (did you mean 'width'?)" in typo.stderr
    (tmp_path / "zero.toml").write_text(files["recipe.toml"].replace("width = 8", "width = 0"))
    refused = run_i2i(["validate", "zero.toml"], site, cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.strip() == "i2i: error: zero.toml: generator.width = 0: must be at least 1"

    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_i2i_example.py").write_text(files["tests/test_i2i_example.py"])
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(site)}
    test = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert test.returncode == 0, test.stdout + test.stderr

    # the package still builds as a wheel beside the runs/ folder its recipe made (setuptools'
    # flat-layout guess refused it until the page named the package)
    pytest.importorskip("setuptools", minversion="64")
    (tmp_path / "pyproject.toml").write_text(files["pyproject.toml"])
    (tmp_path / "i2i_example").mkdir()
    (tmp_path / "i2i_example" / "__init__.py").write_text(files["i2i_example/__init__.py"])
    wheel = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-q", "-w", str(tmp_path / "dist"), str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert wheel.returncode == 0, wheel.stdout + wheel.stderr
    [built] = (tmp_path / "dist").glob("i2i_example-0.3.0-*.whl")
    import zipfile

    assert {name.split("/")[0] for name in zipfile.ZipFile(built).namelist()} == {"i2i_example", "i2i_example-0.3.0.dist-info"}


def test_documented_callback_runs(tmp_path, capsys):
    """The callback in docs/plugins.md, as shown, is found through train.callbacks and called."""
    [snippet] = [b for b in doc_blocks("python") if "PrintEval" in b]
    module = types.ModuleType("print_eval_plugin")
    exec(compile(snippet, "docs/plugins.md", "exec"), module.__dict__)
    assert i2i.register_plugin(module, "printer").status == "loaded"
    recipe = {"task": {"name": "color2gray"}, "data": {"size": 16}, "generator": {"name": "unet", "depth": 2, "width": 4},
              "losses": {"l1": {}}, "train": {"steps": 2, "batch_size": 2, "device": "cpu", "callbacks": ["print_eval"]},
              "eval": {"crop": 16, "max_images": 1}, "output": {"dir": str(tmp_path / "run"), "tensorboard": False}}
    i2i.train(recipe, quiet=True)
    assert re.search(r"^2 \{'psnr': ", capsys.readouterr().out, re.M)


def test_documented_command_is_added_to_the_cli(tmp_path):
    """The register_commands example in docs/plugins.md adds a working command that --help lists."""
    [snippet] = [b for b in doc_blocks("python") if "register_commands" in b]
    site = tmp_path / "site"
    make_distribution(site, "i2i-hello", "1.0", {"hello": "i2i_hello"}, {"i2i_hello.py": snippet})
    assert re.search(r"^  hello +Greet NAME \(an example command\)\.", run_i2i(["--help"], site).stdout, re.M)
    result = run_i2i(["hello", "world"], site)
    assert (result.returncode, result.stdout, result.stderr) == (0, "hello world\n", "")


def test_a_plugin_command_cannot_replace_an_existing_one(tmp_path):
    """A plugin whose command is named like one of i2i's (``run``) does not take it over: the
    built-in stays, the plugin's other commands work, and one warning names the plugin."""
    code = (
        "import click, i2i\n"
        "@i2i.hookimpl\n"
        "def register_commands(cli):\n"
        "    @cli.command('run')\n"
        "    def run():\n"
        "        'Hijack run.'\n"
        "        click.echo('HIJACKED')\n"
        "    @cli.command('own')\n"
        "    def own():\n"
        "        'Its own command.'\n"
        "        click.echo('own')\n"
    )
    site = tmp_path / "site"
    make_distribution(site, "i2i-clash", "1.0", {"clash": "i2i_clash"}, {"i2i_clash.py": code})
    warning = ("i2i: warning: plugin 'clash' registers a command 'i2i run', which i2i itself provides; "
               "'i2i run' stays i2i's own (the plugin should rename its command)\n")
    helped = run_i2i(["run", "--help"], site)
    assert helped.returncode == 0 and "--resume" in helped.stdout and helped.stderr == warning
    own = run_i2i(["own"], site)
    assert (own.returncode, own.stdout, own.stderr) == (0, "own\n", warning)


def test_documented_interfaces_match_the_code():
    """Names and signatures docs/plugins.md states: register(), Task members, loss methods,
    callback events, the defaults example and the test helper it points to."""
    from i2i.registry import Registry

    text = PLUGINS_MD.read_text()
    documented = re.search(r"`register\((.*?)\)`\n", text)[1].split(", ")
    params = inspect.signature(Registry().register_function("generators", "p")).parameters.values()
    assert [p.name if p.default is p.empty else f"{p.name}={p.default!r}" for p in params] == [d for d in documented if d != "*"]
    assert [p.kind for p in params][1:3] == [inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY]

    table = text.split("## 3. The Task interface", 1)[1].split("## 4.", 1)[0]
    members = re.findall(r"^\| `([a-z_]+)(?:\(([^)]*)\))?`((?:, `[a-z_]+`)*)", table, re.M)
    assert len(members) >= 10
    for name, args, more in members:
        for each in (name, *re.findall(r"`([a-z_]+)`", more)):
            assert hasattr(i2i.Task, each), each
        if args:
            assert list(inspect.signature(getattr(i2i.Task, name)).parameters)[1:] == args.split(", "), name

    losses = re.findall(r"`i2i\.(\w+)\.(\w+)\(([^)]*)\)`(?: and `\.(\w+)\(([^)]*)\)`)?", text)
    assert len(losses) == 4
    for kind, *methods in losses:
        for method, args in zip(methods[::2], methods[1::2]):
            if method:
                assert list(inspect.signature(getattr(getattr(i2i, kind), method)).parameters)[1:] == args.split(", "), method

    events = re.findall(r"`(on_\w+)\(([^)]*)\)`", text)
    assert {e for e, _ in events} == {n for n in dir(i2i.Callback) if n.startswith("on_")}
    for event, args in events:
        assert list(inspect.signature(getattr(i2i.Callback, event)).parameters) == ["self", *re.split(r",\s+", args)], event

    def options(component):
        signature = inspect.signature(component.factory).parameters.values()
        return {p.name: p.default for p in signature if p.default is not p.empty} | component.defaults

    name, base, defaults = re.search(r"i2i's\n`(\w+)` is `(\w+)` with `defaults=(\{.*?\})`", text).groups()
    preset, plain = i2i.registry().get("generators", name), i2i.registry().get("generators", base)
    assert preset.factory is plain.factory and options(preset) == options(plain) | eval(defaults)

    assert "def no_host_reads():" in (ROOT / "tests" / "test_cuda_graphs.py").read_text()


def test_every_hook_is_documented():
    text = (ROOT / "docs" / "plugins.md").read_text()
    hooks = [name for name in dir(hookspecs) if name.startswith("register_")]
    assert len(hooks) == 7
    for name in hooks:
        assert f"`{name}(" in text, name
        assert getattr(hookspecs, name).__doc__.strip()


def _plugin(name, kind, component, factory):
    hook = f"register_{kind}"

    def impl(register):
        register(component, factory)

    impl.__name__ = hook
    return types.SimpleNamespace(**{hook: i2i.hookimpl(impl)})


def test_same_name_from_two_plugins_needs_qualifying():
    host = PluginHost()
    host.add_plugin(_plugin("a", "metrics", "score", lambda: (lambda o, t: o.mean((1, 2, 3)))), "alpha")
    host.add_plugin(_plugin("b", "metrics", "score", lambda: (lambda o, t: t.mean((1, 2, 3)))), "beta")
    with pytest.raises(UserError) as info:
        host.registry.get("metrics", "score")
    assert "'alpha:score' and 'beta:score'" in str(info.value)
    assert host.registry.get("metrics", "beta:score").plugin == "beta"


def test_unknown_name_suggests_and_points_to_list():
    with pytest.raises(UnknownComponentError) as info:
        i2i.registry().get("generators", "unett")
    assert str(info.value) == "unknown generator 'unett' (did you mean 'unet'?); see 'i2i list generators'"
    with pytest.raises(UnknownComponentError) as info:
        i2i.registry().get("losses", "lsgann")
    assert str(info.value) == "unknown loss 'lsgann' (did you mean 'lsgan'?); see 'i2i list losses'"


def test_hooks_may_take_fewer_arguments_and_registration_records_origin():
    calls = []

    class Old:
        @i2i.hookimpl
        def register_metrics(self):  # an old plugin that takes no arguments
            calls.append(True)

    info = i2i.register_plugin(Old(), "old")
    assert info.status == "loaded" and calls == [True]
    component = i2i.registry().get("generators", "unet")
    assert component.plugin == "nets" and component.distribution == "i2i"


def test_hook_exception_registers_nothing_from_that_plugin(capsys):
    class HalfBroken:
        @i2i.hookimpl
        def register_generators(self, register):
            register("half", lambda in_channels, out_channels: None)

        @i2i.hookimpl
        def register_losses(self, register):
            raise ValueError("bad loss table")

    info = i2i.register_plugin(HalfBroken(), "halfbroken")
    assert info.status == "failed" and "bad loss table" in info.error
    assert "half" not in i2i.registry().names("generators")
    assert "plugin 'halfbroken'" in capsys.readouterr().err


def test_a_factory_that_builds_the_wrong_thing_is_named_with_its_plugin(tmp_path):
    class Sloppy:
        @i2i.hookimpl
        def register_generators(self, register):
            register("forgot_return", lambda in_channels, out_channels: None)

    i2i.register_plugin(Sloppy(), "sloppy")
    recipe = {"task": {"name": "color2gray"}, "generator": {"name": "forgot_return"}, "losses": {"l1": {}},
              "train": {"steps": 1, "device": "cpu"}, "data": {"size": 16}, "output": {"dir": str(tmp_path / "run")}}
    with pytest.raises(i2i.UserError, match="generator.name = 'forgot_return': plugin 'sloppy' built a NoneType, "
                                            "not a torch.nn.Module; report this to the plugin's author"):
        i2i.train(recipe, quiet=True)


def test_a_plugin_reusing_a_builtin_name_leaves_recipes_meaning_the_builtin(capsys):
    i2i.register_plugin(_plugin("x", "losses", "l1", i2i.ReconstructionLoss), "shadow")
    assert "plugin 'shadow' registers loss 'l1', which i2i's 'losses' plugin also provides" in capsys.readouterr().err
    assert i2i.registry().get("losses", "l1").plugin == "losses"
    assert i2i.registry().get("losses", "shadow:l1").plugin == "shadow"


def test_a_shared_entry_point_name_loads_neither_plugin_and_builtin_names_are_reserved(tmp_path):
    """Which of two distributions Python lists first is an accident of the installation: taking
    it would give a run trained with one the other's components, silently."""
    site = tmp_path / "site"
    make_distribution(site, "i2i-impostor", "0.1", {"nets": "i2i_impostor"}, {"i2i_impostor.py": GOOD})
    make_distribution(site, "i2i-good", "1.0", {"good": "i2i_good"}, {"i2i_good.py": GOOD})
    make_distribution(site, "i2i-good-fork", "1.0", {"good": "i2i_good_fork"}, {"i2i_good_fork.py": GOOD})
    result = run_i2i(["plugins", "--json"], site)
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert plugins["nets"]["builtin"] and plugins["nets"]["status"] == "loaded"
    assert plugins["nets (i2i-impostor)"]["status"] == "failed"
    assert "'nets' is taken by i2i's built-in plugin" in plugins["nets (i2i-impostor)"]["error"]
    by_distribution = {p["distribution"]: p for name, p in plugins.items() if name.startswith("good")}
    assert set(by_distribution) == {"i2i-good", "i2i-good-fork"}
    for dist, other in (("i2i-good", "i2i-good-fork"), ("i2i-good-fork", "i2i-good")):
        assert by_distribution[dist]["status"] == "failed"
        assert (f"the entry-point name 'good' is declared by '{other}' too, so neither is loaded (which to take would "
                "be a guess); uninstall one, or rename the entry point in its [project.entry-points.i2i]"
                in by_distribution[dist]["error"])
    listed = run_i2i(["list", "generators", "good:*"], site)
    assert listed.returncode == 1 and listed.stdout == ""
    assert "no generators match 'good:*'; plugin(s) good, good (i2i-good-fork)" in listed.stderr


def test_an_entry_point_naming_a_class_with_method_hooks_says_how_to_point_it(tmp_path):
    site = tmp_path / "site"
    make_distribution(site, "i2i-classy", "1.0", {"classy": "i2i_classy:Plugin"}, {"i2i_classy.py": (
        "import i2i\n"
        "class Plugin:\n"
        "    @i2i.hookimpl\n"
        "    def register_losses(self, register):\n"
        "        pass\n")})
    plugins = {p["name"]: p for p in json.loads(run_i2i(["plugins", "--json"], site).stdout)}
    assert plugins["classy"]["status"] == "failed"
    assert plugins["classy"]["error"] == ("TypeError: the entry point i2i_classy:Plugin names the class Plugin, whose hooks "
                                          "are methods; point it at the module that holds the hooks, or at an instance "
                                          "(plugin = Plugin() in that module)")


def test_registering_an_installed_plugin_again_changes_nothing():
    module = types.ModuleType("i2i_local")
    module.register_generators = i2i.hookimpl(lambda register: register("local_net", lambda in_channels, out_channels: None))
    first = i2i.register_plugin(module, "local")
    again = i2i.register_plugin(module, "local")
    assert first.status == again.status == "loaded"
    replacement = _plugin("y", "generators", "local_net_v2", lambda in_channels, out_channels: None)
    assert i2i.register_plugin(replacement, "local").status == "loaded"  # a test's newer version
    assert "local_net" not in i2i.registry().names("generators")
    assert i2i.registry().get("generators", "local_net_v2").plugin == "local"


def test_a_hook_with_an_argument_the_spec_lacks_is_named(capsys):
    class Extra:
        @i2i.hookimpl
        def register_metrics(self, register, device):
            pass

    info = i2i.register_plugin(Extra(), "extra")
    assert info.status == "failed"
    assert "register_metrics(register, device)" in info.error and "'device'" in info.error


def test_a_name_from_a_plugin_that_failed_says_so(capsys):
    class Broken:
        @i2i.hookimpl
        def register_generators(self, register):
            raise RuntimeError("no GPU library")

    i2i.register_plugin(Broken(), "broken")
    with pytest.raises(UnknownComponentError, match=r"unknown generator 'broken:net': plugin 'broken' failed to load "
                                                    r"\(register_generators: RuntimeError: no GPU library\); see 'i2i plugins'"):
        i2i.registry().get("generators", "broken:net")
    with pytest.raises(UnknownComponentError, match=r"; plugin 'broken' failed to load \(register_generators: "
                                                    r"RuntimeError: no GPU library\), and may be what provides it"):
        i2i.registry().get("generators", "zzz_net")
    from click.testing import CliRunner

    from i2i.cli import cli

    listed = CliRunner().invoke(cli, ["list", "generators", "broken:*"])  # it said only that nothing matched
    assert listed.output.strip().endswith("plugin(s) broken failed to load (i2i plugins says why)")


def test_load_plugins_naming_nothing_installed_warns(site):
    result = run_i2i(["plugins", "--json"], site, env={"I2I_LOAD_PLUGINS": "good,godo"})
    assert "I2I_LOAD_PLUGINS names 'godo', which no installed plugin has" in result.stderr


def test_a_plugin_registering_one_name_twice_is_disabled_with_the_name():
    class Twice:
        @i2i.hookimpl
        def register_metrics(self, register):
            register("score", lambda: (lambda o, t: o.mean((1, 2, 3))))
            register("score", lambda: (lambda o, t: t.mean((1, 2, 3))))

    info = i2i.register_plugin(Twice(), "twice")
    assert info.status == "failed" and "metric 'score' is registered twice" in info.error


def test_a_run_opened_without_its_plugin_says_which_to_install(tmp_path):
    """A run trained with a third-party generator, opened where that plugin is not installed."""
    site = tmp_path / "site"
    make_distribution(site, "i2i-good", "1.2.3", {"good": "i2i_good"}, {"i2i_good.py": GOOD})
    args = ["run", "recipes/color2gray.toml", "--set", "generator.name='blurnet'", "--set", "train.steps=1",
            "--set", "data.size=32", "--set", "eval.crop=32", "--out", str(tmp_path / "run")]
    trained = run_i2i(args, site, cwd=ROOT)
    assert trained.returncode == 0, trained.stderr
    opened = run_i2i(["eval", str(tmp_path / "run")], cwd=ROOT)  # no site: the plugin is not installed
    assert opened.returncode == 2 and opened.stderr.count("\n") == 1
    assert opened.stderr.startswith(f"i2i: error: {tmp_path / 'run' / 'recipe.toml'}: generator.name: unknown generator "
                                    "'blurnet'")
    assert opened.stderr.endswith("; this run was trained with plugin 'good', which is not loaded here: "
                                  "pip install i2i-good==1.2.3\n")
    # the run's record names the missing plugin: no guess at a similar name ('unet'?), or among those not loaded
    broken = tmp_path / "broken"
    make_distribution(broken, "i2i-broken", "0.1", {"broken": "i2i_broken"}, {"i2i_broken.py": BROKEN_IMPORT})
    beside = run_i2i(["eval", str(tmp_path / "run")], broken, cwd=ROOT)
    assert beside.returncode == 2 and "did you mean" not in beside.stderr and "perhaps" not in beside.stderr
    assert beside.stderr.splitlines()[-1].endswith("which is not loaded here: pip install i2i-good==1.2.3")
    # another plugin that reuses the name: the run opened with its network, scored without a word
    other = tmp_path / "other"
    make_distribution(other, "i2i-other", "0.1", {"other": "i2i_other"}, {"i2i_other.py": GOOD.replace("good", "other")})
    stranger = run_i2i(["eval", str(tmp_path / "run")], other, cwd=ROOT)
    assert stranger.returncode == 2 and stranger.stderr.count("\n") == 1, stranger.stderr
    assert stranger.stderr == (f"i2i: error: {tmp_path / 'run' / 'recipe.toml'}: generator 'blurnet' is provided here only "
                               "by plugin 'other', which this run was not trained with; this run was trained with plugin "
                               "'good', which is not loaded here: pip install i2i-good==1.2.3\n")


def test_a_run_opened_with_another_version_of_its_plugin_names_both(tmp_path):
    """The plugin renamed an option in 2.0: the run's recipe has the old name, and the error said
    only 'unknown option', a dead end."""
    site, newer = tmp_path / "site", tmp_path / "newer"
    make_distribution(site, "i2i-good", "1.2.3", {"good": "i2i_good"}, {"i2i_good.py": GOOD})
    args = ["run", "recipes/color2gray.toml", "--set", "generator.name='blurnet'", "--set", "generator.width=4",
            "--set", "train.steps=1", "--set", "data.size=32", "--set", "eval.crop=32", "--out", str(tmp_path / "run")]
    assert run_i2i(args, site, cwd=ROOT).returncode == 0
    make_distribution(newer, "i2i-good", "2.0", {"good": "i2i_good"}, {"i2i_good.py": GOOD.replace("width", "channels")})
    opened = run_i2i(["eval", str(tmp_path / "run")], newer, cwd=ROOT)
    assert opened.returncode == 2 and opened.stderr.count("\n") == 1
    assert "generator.width: unknown option" in opened.stderr
    assert opened.stderr.endswith("; this run was trained with plugin 'good' 1.2.3, and 2.0 is loaded here, whose options "
                                  "may differ: pip install i2i-good==1.2.3 to use the run as it was, or edit the run's "
                                  "recipe.toml to the new options\n")
    same = tmp_path / "same"  # 2.0 without the rename: the user's own mistake is not put on the plugin
    make_distribution(same, "i2i-good", "2.0", {"good": "i2i_good"}, {"i2i_good.py": GOOD})
    typo = run_i2i(["eval", str(tmp_path / "run"), "--set", "task.sigmaa=3"], same, cwd=ROOT)
    error = typo.stderr.splitlines()[-1]
    assert typo.returncode == 2 and "unknown option" in error and "trained with plugin" not in error, typo.stderr
    # a version that opens the run without an error still says it is not the one the run trained with
    opened = run_i2i(["eval", str(tmp_path / "run")], same, cwd=ROOT)
    assert opened.returncode == 0 and opened.stderr == (
        f"i2i: note: {tmp_path / 'run'} was trained with plugin 'good' 1.2.3, and 2.0 is loaded here, whose components "
        "may behave otherwise; pip install i2i-good==1.2.3 to use the run as it was\n")
    resumed = run_i2i(["run", "--resume", str(tmp_path / "run"), "--set", "train.steps=2"], same, cwd=ROOT)
    assert resumed.returncode == 0 and "was trained with plugin 'good' 1.2.3, and 2.0 is loaded here" in resumed.stderr


def test_a_plugin_slow_to_import_is_named(tmp_path, monkeypatch, capsys):
    """Every command imports the plugins: one that takes seconds is pointed out, with the way
    around it (the threshold lowered to 0 here, so any import counts as slow)."""
    from i2i import plugins

    site = tmp_path / "site"
    code = "import i2i\n\n@i2i.hookimpl\ndef register_losses(register):\n    pass\n"
    make_distribution(site, "i2i-slow", "0.1", {"slow": "i2i_slow"}, {"i2i_slow.py": code})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(plugins, "SLOW_IMPORT_SECONDS", 0.0)
    monkeypatch.setenv("I2I_LOAD_PLUGINS", "slow")
    PluginHost().load_entry_points()
    assert re.fullmatch(r"i2i: note: plugin 'slow' \(i2i-slow\) took \d+\.\d s to import, which every i2i command "
                        r"waits for; I2I_LOAD_PLUGINS=NAME,\.\.\. loads only the plugins named\n", capsys.readouterr().err)
    monkeypatch.setattr(plugins, "SLOW_IMPORT_SECONDS", 3.0)
    PluginHost().load_entry_points()  # an import of a few milliseconds: no note
    assert capsys.readouterr().err == ""


def test_an_option_without_an_annotation_takes_its_defaults_type(tmp_path):
    """As docs/plugins.md says: `scale=2` takes integers only, `stuff=None` any value."""

    class Scaled(i2i.ReconstructionLoss):
        def __init__(self, scale=2, stuff=None):
            super().__init__()

        def forward(self, fake, target):
            return (fake - target).abs().mean()

    i2i.register_plugin(_plugin("x", "losses", "scaled", Scaled), "unannotated")
    recipe = {"task": {"name": "gray2color"}, "generator": {"name": "unet_small"}, "data": {"source": str(tmp_path)},
              "losses": {"s": {"name": "scaled", "scale": 3, "stuff": "anything"}}}
    assert i2i.load_recipe(recipe)["losses"]["s"]["scale"] == 3
    recipe["losses"]["s"]["scale"] = 2.5
    with pytest.raises(i2i.RecipeError, match=r"losses\.s\.scale = 2\.5: expected an integer"):
        i2i.load_recipe(recipe)


def test_a_plugin_named_before_the_builtins_can_make_a_preset_of_a_builtin_network(tmp_path):
    """Plugins loaded in the order of their entry-point names: one named 'attn' ran its hooks
    before i2i's 'nets', found no unet, and was disabled ('unknown generator nets:unet')."""
    site = tmp_path / "site"
    preset = '''import i2i


@i2i.hookimpl
def register_generators(register):
    unet = i2i.registry("generators")["unet"]
    register("unet_wide", unet.factory, defaults={"depth": 5, "width": 48})
'''
    make_distribution(site, "i2i-attn", "0.1", {"attn": "i2i_attn"}, {"i2i_attn.py": preset})
    result = run_i2i(["list", "generators", "unet_wide", "--json"], site)
    assert result.returncode == 0, result.stderr
    [listed] = json.loads(result.stdout)
    assert listed["plugin"] == "attn" and listed["options"]["width"]["default"] == 48
    shown = run_i2i(["list", "generators", "unet_wide"], site)
    assert shown.stdout.splitlines()[0].endswith("[a preset of unet]")
