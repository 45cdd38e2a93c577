"""``deepseek plugins list|which`` and the CLI side of broken plugins, through real subprocesses."""

from __future__ import annotations

import importlib.util
import json

from plugin_testing import PASS_PLUGIN, DistFactory, base_env, run_cli

from deepseek.plugins.install import install_command

HAS_PRO = importlib.util.find_spec("deepseek_pro") is not None


def test_list_json_all_installed() -> None:
    proc = run_cli("plugins", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    records = {r["distribution"]: r for r in json.loads(proc.stdout)}
    core = records["deepseek-core"]
    assert (core["version"], core["edition"], core["status"]) == ("0.1.0", "core (V1)", "ok")
    assert "single" in core["components"]["strategy"] and "plugins" in core["components"]["command"]
    assert list(records)[0] == "deepseek-core"
    if HAS_PRO:
        assert records["deepseek-pro"]["edition"] == "pro (V2)"
        assert records["deepseek-pro"]["status"] == "ok"


def test_list_json_with_only_core_allowed() -> None:
    proc = run_cli("plugins", "list", "--json", env=base_env(DEEPSEEK_PLUGINS="deepseek-core"))
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout)
    loaded = [r["distribution"] for r in records if r["status"] == "ok"]
    assert loaded == ["deepseek-core"]
    assert all(r["components"] == {} for r in records if r["distribution"] != "deepseek-core")
    # the same through the CLI option
    proc = run_cli("--plugins", "deepseek-core", "plugins", "list", "--json")
    assert [r["distribution"] for r in json.loads(proc.stdout) if r["status"] == "ok"] == ["deepseek-core"]


def test_no_autoload_option_and_environment(make_dist: DistFactory) -> None:
    make_dist("deepseek-aa", {"aa_plugin": PASS_PLUGIN.format(name="aa.pass", module="aa_plugin")})
    for args, extra in ((("--no-plugin-autoload",), {}), ((), {"DEEPSEEK_DISABLE_PLUGIN_AUTOLOAD": "1"})):
        proc = run_cli(*args, "plugins", "list", "--json", env=make_dist.env(**extra))
        assert proc.returncode == 0, proc.stderr
        records = json.loads(proc.stdout)
        assert [r["distribution"] for r in records if r["status"] == "ok"] == ["deepseek-core"]
        assert next(r for r in records if r["distribution"] == "deepseek-aa")["reason"].startswith("autoload disabled")
    proc = run_cli("--no-plugin-autoload", "--plugins", "aa", "plugins", "which", "pass", "aa.pass", env=make_dist.env())
    assert proc.returncode == 0 and "deepseek-aa 0.1.0 (third-party)" in proc.stdout


def test_list_table_shows_status_and_reason(make_dist: DistFactory) -> None:
    make_dist("deepseek-broken", {"broken_plugin": "raise ImportError('nope')\n"}, version="0.7")
    proc = run_cli("plugins", "list", env=make_dist.env(DEEPSEEK_PLUGINS="broken"))
    assert proc.returncode == 0
    assert "deepseek-broken" in proc.stdout and "failed" in proc.stdout and "ImportError: nope" in proc.stdout
    assert proc.stderr.startswith("warning: deepseek-broken 0.7: plugin 'broken_plugin'")
    assert len(proc.stderr.strip().splitlines()) == 1


HOOK_ONLY = """
from deepseek import hookimpl

@hookimpl
def deepseek_train_start(trainer):
    pass

@hookimpl
def deepseek_train_end(trainer, metrics):
    pass
"""


def test_list_shows_the_hooks_of_a_plugin_that_registers_no_component(make_dist: DistFactory) -> None:
    """A hook-only plugin showed '-' and nothing of what it does."""
    make_dist("deepseek-hooky", {"hooky_plugin": HOOK_ONLY})
    proc = run_cli("plugins", "list", "--json", env=make_dist.env())
    assert proc.returncode == 0, proc.stderr
    records = {r["distribution"]: r for r in json.loads(proc.stdout)}
    assert records["deepseek-hooky"]["hooks"] == ["deepseek_train_end", "deepseek_train_start"]
    assert records["deepseek-hooky"]["components"] == {}
    assert records["deepseek-core"]["hooks"] == []
    table = run_cli("plugins", "list", env=make_dist.env()).stdout
    row = next(line for line in table.splitlines() if "deepseek-hooky" in line)
    assert "hooks: deepseek_train_end, deepseek_train_start" in row


def test_broken_plugin_warns_in_one_line_and_the_cli_keeps_working(make_dist: DistFactory) -> None:
    make_dist("deepseek-broken", {"broken_plugin": "import not_there_xyz\n"})
    proc = run_cli("plugins", "list", "--json", env=make_dist.env())
    assert proc.returncode == 0
    record = next(r for r in json.loads(proc.stdout) if r["distribution"] == "deepseek-broken")
    assert record["status"] == "failed" and "No module named 'not_there_xyz'" in record["reason"]
    warnings = [line for line in proc.stderr.splitlines() if "deepseek-broken" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: deepseek-broken 0.1.0:")


def test_strict_mode_is_fatal_with_one_line(make_dist: DistFactory) -> None:
    make_dist("deepseek-broken", {"broken_plugin": "import not_there_xyz\n"})
    for args, extra in (
        (("--strict-plugins", "plugins", "list"), {}),
        (("plugins", "list"), {"DEEPSEEK_STRICT_PLUGINS": "1"}),
        (("--help",), {"DEEPSEEK_STRICT_PLUGINS": "1"}),
    ):
        proc = run_cli(*args, env=make_dist.env(**extra))
        assert proc.returncode == 1, (args, proc.stdout)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("error: deepseek-broken 0.1.0: plugin 'broken_plugin'")
        assert lines[0].endswith("(strict plugin mode is on)")


def test_disable_option_skips_a_broken_plugin(make_dist: DistFactory) -> None:
    make_dist("deepseek-broken", {"broken_plugin": "import not_there_xyz\n"})
    proc = run_cli("--strict-plugins", "--disable-plugins", "broken", "plugins", "list", "--json", env=make_dist.env())
    assert proc.returncode == 0, proc.stderr
    record = next(r for r in json.loads(proc.stdout) if r["distribution"] == "deepseek-broken")
    assert record["status"] == "disabled"


def test_which_builtin() -> None:
    proc = run_cli("plugins", "which", "strategies", "single")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.splitlines()[0] == "strategy single -> deepseek-core:single"
    assert "deepseek-core 0.1.0 (core (V1))" in out
    assert "deepseek.builtins.strategies" in out and "deepseek.training.single:SingleDeviceStrategy" in out
    assert "the only candidate" in out


def test_which_conflict_lists_candidates_and_prefer_picks(make_dist: DistFactory) -> None:
    for short in ("aa", "bb"):
        module = f"{short}_plugin"
        make_dist(f"deepseek-{short}", {module: PASS_PLUGIN.format(name="dup.pass", module=module)})
    env = make_dist.env(DEEPSEEK_PLUGINS="aa,bb")
    proc = run_cli("plugins", "which", "pass", "dup.pass", env=env)
    assert proc.returncode == 2, proc.stderr  # the lookup fails: the candidates are printed, then one error line
    error = proc.stderr.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: pass 'dup.pass': no candidate wins: ")
    assert "registered by both deepseek-aa" in error[0]
    assert "deepseek-aa:dup.pass" in proc.stdout and "deepseek-bb:dup.pass" in proc.stdout
    proc = run_cli("plugins", "which", "pass", "dup.pass", "--json", env={**env, "DEEPSEEK_PLUGIN_PREFER": "bb"})
    answer = json.loads(proc.stdout)
    assert answer["winner"]["distribution"] == "deepseek-bb"
    assert answer["reason"] == "preferred by DEEPSEEK_PLUGIN_PREFER"
    assert [c["qualified_name"] for c in answer["candidates"]] == ["deepseek-aa:dup.pass", "deepseek-bb:dup.pass"]


def test_which_zero3_with_only_core_names_the_edition() -> None:
    proc = run_cli("plugins", "which", "strategy", "zero3", env=base_env(DEEPSEEK_PLUGINS="deepseek-core"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: strategy 'zero3' is provided by deepseek-pro")
    if not HAS_PRO:
        assert lines[0].endswith(f"install it with: {install_command('deepseek-pro')}")


def test_which_unknown_kind_and_name() -> None:
    proc = run_cli("plugins", "which", "gizmo", "x")
    assert proc.returncode == 2 and proc.stderr.startswith("error: unknown component kind 'gizmo'")
    proc = run_cli("plugins", "which", "strategy", "singel")
    assert proc.returncode == 2 and "did you mean 'single'?" in proc.stderr


def test_no_torch_for_help_list_and_which() -> None:
    for args in (("--help",), ("plugins", "list"), ("plugins", "list", "--json"), ("plugins", "which", "model", "tiny")):
        proc = run_cli(*args, importtime=True)
        imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
        assert "deepseek.cli.main" in imported, args
        assert not {m for m in imported if m == "torch" or m.startswith("torch.")}, args


def test_list_shows_a_name_two_distributions_register_and_who_wins(make_dist: DistFactory) -> None:
    """A plugin registering a core built-in's name is listed on both records (DESIGN: the bare name
    fails until it is qualified or given precedence), not as a plain 'ok'."""
    make_dist("deepseek-aa", {"aa_plugin": PASS_PLUGIN.format(name="const-fold", module="aa_plugin")})
    env = make_dist.env(DEEPSEEK_PLUGINS="aa")
    records = {r["distribution"]: r for r in json.loads(run_cli("plugins", "list", "--json", env=env).stdout)}
    assert records["deepseek-aa"]["status"] == "ok"
    assert records["deepseek-aa"]["conflicts"] == [
        {"kind": "pass", "name": "const-fold", "with": ["deepseek-core"], "winner": None, "why": None}]
    assert records["deepseek-core"]["conflicts"][0]["with"] == ["deepseek-aa"]
    rows = [line.split("│") for line in run_cli("plugins", "list", env=env).stdout.splitlines() if "│" in line]
    status = " ".join(" ".join(row[-2].strip() for row in rows).split())  # the status column, unwrapped
    assert ("pass 'const-fold' also registered by deepseek-core: a bare 'const-fold' fails: qualify it as "
            "deepseek-aa:const-fold or set [plugins] prefer") in status

    preferred = {r["distribution"]: r for r in json.loads(
        run_cli("plugins", "list", "--json", env={**env, "DEEPSEEK_PLUGIN_PREFER": "aa"}).stdout)}
    (conflict,) = preferred["deepseek-aa"]["conflicts"]
    assert conflict["winner"] == "deepseek-aa" and "DEEPSEEK_PLUGIN_PREFER" in conflict["why"]
