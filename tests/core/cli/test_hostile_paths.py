"""Hostile paths and text, every core command: outputs that are files, folders, below a file or
unwritable; inputs that are missing, folders, files or not what they claim; non-UTF-8 bytes in
arguments and in files. Each is refused with one line, exit 2, nothing written. Where an output's
folders are missing, they are created and the command says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hostile_cli import TINY, Hostile

LONG = "z" * 300
"""A file name longer than the 255 bytes a name may have."""
NOT_UTF8 = b"\xff\xfe caf\xe9"
"""Latin-1 bytes: not UTF-8."""
NOT_UTF8_ARG = NOT_UTF8.decode("utf-8", "surrogateescape")
"""What Python makes of those bytes in ``sys.argv``."""


def _layout(work: Path) -> None:
    """The files and folders the cases point at."""
    (work / "afile").write_text("x\n")
    (work / "adir").mkdir()
    (work / "empty-run").mkdir()
    (work / "notes.safetensors").write_bytes(b"\x00" * 40)
    (work / "latin1.toml").write_bytes(b"[train]\nlr = 1e-3\n# " + NOT_UTF8 + b"\n")
    (work / "binary.toml").write_bytes(bytes(range(256)))
    (work / "bad.toml").write_text("[train\nlr = 1\n")
    (work / "list.toml").write_text("checkpoint = [1, 2]\n")
    (work / "loop").symlink_to("loop")
    (work / "dangling").symlink_to("gone.toml")
    os.mkfifo(work / "afifo")
    (work / "hf-gpt2").mkdir()  # what save_pretrained writes
    (work / "hf-gpt2" / "config.json").write_text('{"model_type": "gpt2"}')
    (work / "hf-gpt2" / "model.safetensors").write_bytes(b"\x00" * 16)


OUTPUTS: list[tuple[str, list[str], list[str]]] = [
    ("train run-dir is a file", ["train", *TINY, "--run-dir", "afile"], ["--run-dir", "afile is a file"]),
    ("train run-dir below a file", ["train", *TINY, "--run-dir", "afile/run"], ["--run-dir", "afile is a file"]),
    ("train run-dir deep below a file", ["train", *TINY, "--run-dir", "afile/a/b"], ["afile is a file"]),
    ("train runs_dir is a file", ["train", *TINY, "--set", "logging.runs_dir=afile"], ["logging.runs_dir", "afile"]),
    *[(f"train run name {v!r}", ["train", *TINY, "--set", f"logging.name={v!r}"], ["logging.name", "one folder name"])
      for v in ("../../escaped", "a/b", "..", " ")],  # ../../escaped trained outside logging.runs_dir
    # a run folder named with a line break, ESC sequence or right-to-left override was made as given
    *[(f"train run name with {what}", ["train", *TINY, "--set", f"logging.name={json.dumps(v)}"],
       ["logging.name: holds a character that does not print", f"('{shown}', character 4)", "printable characters"])
      for what, v, shown in (("a line break", "run\nx", "\\n"), ("ESC", "run\x1b[31m", "\\x1b"),
                             ("an RTL override", "run\u202ex", "\\u202e"), ("a tab", "run\tx", "\\t"))],
    ("train runs_dir empty", ["train", *TINY, "--set", "logging.runs_dir=''"], ["logging.runs_dir", "empty path"]),
    ("train runs_dir below a file", ["train", *TINY, "--set", "logging.runs_dir=afile/runs"], ["logging.runs_dir"]),
    ("train run-dir in /proc", ["train", *TINY, "--run-dir", "/proc/self/run"], ["--run-dir"]),
    ("train run-dir a symlink loop", ["train", *TINY, "--run-dir", "loop"], ["--run-dir", "loop cannot be used"]),
    ("train run-dir below a symlink loop", ["train", *TINY, "--run-dir", "loop/run"], ["--run-dir"]),
    ("export out a symlink loop", ["export", "--checkpoint", "RUN", "--out", "loop"], ["--out", "loop cannot be used"]),
    ("latency json a symlink loop", ["bench", "latency", "--model", "tiny", "--json", "loop"], ["--json"]),
    # a loop or a dangling link is named as such (was "not found" / "no such")
    ("config a symlink loop", ["train", "loop", *TINY], ["loop: is a loop of symbolic links"]),
    ("checkpoint a symlink loop", ["generate", "--checkpoint", "loop"], ["loop: is a loop of symbolic links"]),
    ("config a dangling link", ["train", "dangling", *TINY],
     ["dangling: is a symbolic link to gone.toml, which does not exist"]),
    ("checkpoint a dangling link", ["eval", "--checkpoint", "dangling"], ["dangling: is a symbolic link to gone.toml"]),
    ("data path a symlink loop", ["train", *TINY, "--set", "data.path=loop"],
     ["data.path: 'loop' is a loop of symbolic links"]),
    ("train run-dir name too long", ["train", *TINY, "--run-dir", "n" * 300], ["--run-dir"]),
    ("export out is a folder", ["export", "--checkpoint", "RUN", "--out", "adir"], ["--out", "adir is a folder", "model.pt2"]),
    ("export out another kind of file", ["export", "--checkpoint", "RUN", "--out", "afile"],
     ["--out", "afile does not end in .pt2"]),  # was replaced by the archive, exit 0
    ("export out below a file", ["export", "--checkpoint", "RUN", "--out", "afile/m.pt2"], ["--out", "afile is a file"]),
    ("export out in /proc", ["export", "--checkpoint", "RUN", "--out", "/proc/self/m.pt2"], ["--out"]),
    # /proc itself and a missing folder below it: access(2) says root may write there (was an internal error)
    ("export out in /proc's top", ["export", "--checkpoint", "RUN", "--out", "/proc/m.pt2"],
     ["--out: /proc is not writable (No such file or directory)"]),
    ("train run-dir below /proc's top", ["train", *TINY, "--run-dir", "/proc/x/run"],
     ["--run-dir: /proc is not writable"]),
    # a FIFO (or a device) at an output path was replaced by a regular file, exit 0
    ("latency json a FIFO", ["bench", "latency", "--model", "tiny", "--json", "afifo"],
     ["--json: afifo is not a regular file (a device, FIFO or socket)"]),
    ("latency json is a folder", ["bench", "latency", "--model", "tiny", "--json", "adir"], ["--json", "folder"]),
    ("latency json below a file", ["bench", "latency", "--model", "tiny", "--json", "afile/x.json"], ["--json"]),
    ("bench train json is a folder", ["bench", "train", "--model", "tiny", "--json", "adir"], ["--json", "folder"]),
    ("bench train json below a file", ["bench", "train", "--model", "tiny", "--json", "afile/x.json"], ["--json"]),
    ("plugins new dir is a file", ["plugins", "new", "acme", "--dir", "afile"], ["--dir", "afile is a file"]),
    ("plugins new dir below a file", ["plugins", "new", "acme", "--dir", "afile/sub"], ["--dir", "afile is a file"]),
    # creating ex/../m.pt2 would create ex first and leave it behind, empty
    ("export out through a missing folder and ..", ["export", "--checkpoint", "RUN", "--out", "ex/../m.pt2"],
     ["--out", "goes through ex, which does not exist", "without '..', e.g. m.pt2"]),
    ("run-dir through a missing folder and ..", ["train", *TINY, "--run-dir", "ex/../run"],
     ["--run-dir", "without '..', e.g. run"]),
]

INPUTS: list[tuple[str, list[str], list[str]]] = [
    *[(f"{cmd} checkpoint {name}", [cmd, "--checkpoint", path, *extra], [path])
      for cmd, extra in (("generate", []), ("eval", []), ("optimize", []), ("export", ["--out", "m.pt2"]))
      for name, path in (("missing", "no/such/run"), ("a file", "afile"), ("an empty folder", "empty-run"),
                         ("garbage safetensors", "notes.safetensors"))],
    # was "hf-gpt2/trainer.json: trainer state file is missing; the checkpoint is incomplete"
    *[(f"{cmd} a Hugging Face folder", [cmd, "--checkpoint", "hf-gpt2", *extra],
       ["hf-gpt2: a Hugging Face model folder", "deepseek import-hf hf-gpt2 --out DIR"])
      for cmd, extra in (("generate", []), ("eval", []), ("export", ["--out", "m.pt2"]))],
    ("resume missing", ["train", *TINY, "--resume", "no/such/run"], ["no/such/run"]),
    ("resume a file", ["train", *TINY, "--resume", "afile"], ["afile: is a file"]),
    ("resume an empty folder", ["train", *TINY, "--resume", "empty-run"], ["contains no complete checkpoint"]),
    ("config is a folder", ["train", "adir", *TINY], ["adir: is a directory"]),
    ("config missing", ["train", "nope.toml", *TINY], ["nope.toml: config file not found"]),
    ("config not UTF-8", ["train", "latin1.toml", *TINY], ["latin1.toml", "cannot read"]),
    ("config binary", ["train", "binary.toml", *TINY], ["binary.toml"]),
    ("config malformed", ["train", "bad.toml", *TINY], ["bad.toml: not valid TOML"]),
    ("config section not a table", ["train", "list.toml", *TINY], ["checkpoint: expected a [checkpoint] table"]),
    ("config show not UTF-8", ["config", "show", "latin1.toml"], ["latin1.toml"]),
    ("costs is a folder", ["advise", "--model", "tiny", "--costs", "adir"], ["--costs", "is a directory"]),
    ("costs missing", ["advise", "--model", "tiny", "--costs", "none.toml"], ["--costs", "none.toml"]),
    ("costs not UTF-8", ["advise", "--model", "tiny", "--costs", "latin1.toml"], ["--costs", "latin1.toml"]),
    ("costs malformed", ["advise", "--model", "tiny", "--costs", "bad.toml"], ["--costs", "not valid TOML"]),
    ("data path missing", ["train", *TINY, "--set", "data.path=no/such/dir"], ["data.path"]),
    # a name over 255 bytes: Path.exists() raises ENAMETOOLONG (was an internal error, exit 1)
    *[(f"{what} name too long", argv, ["the path is too long for the file system", "give a shorter path"])
      for what, argv in (("eval checkpoint", ["eval", "--checkpoint", LONG]),
                         ("generate checkpoint", ["generate", "--checkpoint", LONG, "x"]),
                         ("config", ["train", f"{LONG}.toml", *TINY]), ("config show", ["config", "show", f"{LONG}.toml"]),
                         ("resume", ["train", *TINY, "--resume", LONG]))],
    ("run name too long", ["train", *TINY, "--set", f"logging.name={LONG!r}"],  # left an empty runs/ behind
     ["logging.name: is 300 bytes long, more than a folder name may be (255)"]),
    ("export out below a name too long", ["export", "--checkpoint", "RUN", "--out", f"new/{LONG}/m.pt2"],
     ["--out", "File name too long", "300 bytes, a name may have 255"]),  # left an empty new/ behind
    # a line break in a path the user gave is written as its escape: the error was two lines
    ("checkpoint with a newline", ["eval", "--checkpoint", "no\nthere"], ["no\\nthere: no such checkpoint"]),
    ("config with a carriage return", ["train", "cfg\r\nx.toml"], ["cfg\\r\\nx.toml: config file not found"]),
    ("prompts with a line separator", ["generate", "--checkpoint", "RUN", "--prompts", "p\u2028q"],
     ["--prompts: p\\u2028q does not exist"]),
    ("checkpoint with an escape sequence", ["eval", "--checkpoint", "no\x1b[2Jthere"],  # was printed raw: cleared the screen
     ["no\\x1b[2Jthere: no such checkpoint"]),
    # a loop of links or a link to nothing was said not to exist
    ("script a loop of links", ["run", "loop"], ["run: 'loop' is a loop of symbolic links"]),
    ("script a dangling link", ["run", "dangling"], ["run: 'dangling' is a symbolic link to gone.toml, which does not exist"]),
    ("import-hf a loop of links", ["import-hf", "loop", "--out", "m"], ["import-hf: loop is a loop of symbolic links"]),
]

TEXT: list[tuple[str, list[str], list[str]]] = [
    ("generate prompt", ["generate", "--checkpoint", "RUN", NOT_UTF8_ARG], ["not valid UTF-8"]),
    ("generate prompt after --", ["generate", "--checkpoint", "RUN", "--", NOT_UTF8_ARG], ["not valid UTF-8"]),
    ("train run-dir", ["train", *TINY, "--run-dir", NOT_UTF8_ARG], ["the value of --run-dir", "not valid UTF-8"]),
    ("train --set value", ["train", *TINY, "--set", f"logging.name={NOT_UTF8_ARG}"], ["--set", "not valid UTF-8"]),
    ("train config name", ["train", NOT_UTF8_ARG, *TINY], ["not valid UTF-8"]),
    ("export out", ["export", "--checkpoint", "RUN", "--out", NOT_UTF8_ARG], ["--out", "not valid UTF-8"]),
    ("plugins new name", ["plugins", "new", NOT_UTF8_ARG], ["not valid UTF-8"]),
    ("advise params", ["advise", "--params", NOT_UTF8_ARG], ["--params", "not valid UTF-8"]),
]

EMPTY: list[tuple[str, list[str], list[str]]] = [
    (f"empty {what}", argv, [option, "empty path"]) for what, argv, option in [
        ("run-dir", ["train", *TINY, "--run-dir", ""], "--run-dir"),  # was a run in the working folder
        ("run-dir blanks", ["train", *TINY, "--run-dir", "  "], "--run-dir"),
        ("resume", ["train", *TINY, "--resume", ""], "--resume"),
        ("config", ["train", "", *TINY], "CONFIG.toml"),
        ("config show", ["config", "show", ""], "CONFIG.toml"),
        *[(f"{cmd} checkpoint", [cmd, "--checkpoint", ""], "--checkpoint")
          for cmd in ("generate", "eval", "optimize", "export")],
        ("prompts", ["generate", "--checkpoint", "RUN", "--prompts", ""], "--prompts"),
        ("export out", ["export", "--checkpoint", "RUN", "--out", ""], "--out"),  # was the default, silently
        ("latency json", ["bench", "latency", "--model", "tiny", "--json", ""], "--json"),
        ("latency against", ["bench", "latency", "--model", "tiny", "--against", ""], "--against"),
        ("latency config", ["bench", "latency", "--config", ""], "--config"),
        ("costs", ["advise", "--model", "tiny", "--costs", ""], "--costs"),
        ("plugins new dir", ["plugins", "new", "acme", "--dir", ""], "--dir"),
        ("bench train json", ["bench", "train", "--model", "tiny", "--json", ""], "--json"),
        ("tokenizer train out", ["tokenizer", "train", "--out", ""], "--out"),
        ("tokenizer train data", ["tokenizer", "train", "--data", "", "--out", "t.json"], "--data"),  # was the
        # embedded corpus, as if --data were not given
        ("tokenizer info", ["tokenizer", "info", ""], "FILE.json|DIR"),
        ("import-hf folder", ["import-hf", "", "--out", "x"], "PATH"),
        ("import-hf out", ["import-hf", "adir", "--out", ""], "--out"),
    ]
]
"""An empty path is the current folder to Python: refused, naming the option."""

CASES = [*OUTPUTS, *INPUTS, *TEXT, *EMPTY]


@pytest.mark.parametrize(("what", "argv", "expect"), CASES, ids=[c[0] for c in CASES])
def test_hostile_path_or_text_is_refused(hostile: Hostile, trained_run: Path, what: str, argv: list[str],
                                         expect: list[str]) -> None:
    _layout(hostile.work)
    argv = [str(trained_run) if a == "RUN" else a for a in argv]
    hostile.refused(*argv, expect=expect)


def test_unwritable_folder_is_refused(hostile: Hostile, trained_run: Path) -> None:
    locked = hostile.work / "locked"
    locked.mkdir(mode=0o500)
    if os.access(locked, os.W_OK):
        pytest.skip("running as root: permissions do not stop writes (the /proc cases cover it)")
    hostile.refused("train", *TINY, "--run-dir", "locked/run", expect=["locked is not writable"])
    hostile.refused("export", "--checkpoint", str(trained_run), "--out", "locked/m.pt2", expect=["--out"])


def test_resuming_a_run_on_a_read_only_file_system_names_the_run_folder(hostile: Hostile, trained_run: Path) -> None:
    """It blamed logging.runs_dir, which the command did not use."""
    import shutil

    source, mounted = hostile.work / "src", hostile.work / "ro"
    source.mkdir()
    mounted.mkdir()
    shutil.copytree(trained_run, source / "run")
    if subprocess.run(["mount", "--bind", str(source), str(mounted)], capture_output=True).returncode != 0:
        pytest.skip("needs a read-only bind mount (root, mount(8)): permissions do not stop root's writes")
    try:
        if subprocess.run(["mount", "-o", "remount,ro,bind", str(mounted)], capture_output=True).returncode != 0:
            pytest.skip("could not make the bind mount read-only")
        err = hostile.refused("train", "--resume", str(mounted / "run"), "--max-steps", "2",
                              expect=[f"--resume {mounted / 'run'}: the run folder is not writable"])
        assert "continue in a new folder with --run-dir NEW" in err and "logging.runs_dir" not in err
        done = hostile.run("train", "--resume", str(mounted / "run"), "--max-steps", "2", "--run-dir",
                            str(hostile.work / "copy"))
        assert done.code == 0, done.stderr
    finally:
        subprocess.run(["umount", "--lazy", str(mounted)], capture_output=True)  # busy for a moment after the run: detach now


def test_missing_output_folders_are_created_and_named(hostile: Hostile, trained_run: Path) -> None:
    done = hostile.run("export", "--checkpoint", str(trained_run), "--out", "deploy/v1/model.pt2")
    assert done.code == 0, done.stderr
    assert "wrote deploy/v1/model.pt2" in done.stdout and "(created folders deploy, deploy/v1)" in done.stdout
    assert (hostile.work / "deploy" / "v1" / "model.pt2").is_file()
    made = hostile.run("plugins", "new", "acme", "--dir", "plugins/here")
    assert made.code == 0, made.stderr
    assert "(created folders plugins, plugins/here)" in made.stdout
    assert (hostile.work / "plugins" / "here" / "deepseek-acme" / "pyproject.toml").is_file()
    # The folder commands name theirs too (export --format hf and import-hf said only "wrote ...")
    hf = hostile.run("export", "--checkpoint", str(trained_run), "--format", "hf", "--out", "hub/gpt2/v1")
    assert hf.code == 0, hf.stderr
    assert hf.stdout.startswith("wrote hub/gpt2/v1 (Hugging Face GPT-2, fp32, ")
    assert "MiB) (created folders hub, hub/gpt2); load it with" in hf.stdout
    imported = hostile.run("import-hf", "hub/gpt2/v1", "--out", "imports/v1/gpt")
    assert imported.code == 0, imported.stderr
    assert imported.stdout.startswith("wrote imports/v1/gpt (created folders imports, imports/v1): model.safetensors")
    assert (hostile.work / "imports" / "v1" / "gpt" / "config.toml").is_file()
    again = hostile.run("import-hf", "hub/gpt2/v1", "--out", "imports/v1/again")  # the parents exist now
    assert again.code == 0 and again.stdout.startswith("wrote imports/v1/again: model.safetensors"), again.stderr


def test_non_utf8_bytes_from_a_real_command_line(tmp_path: Path, trained_run: Path) -> None:
    """The bytes as a shell passes them (what Python decodes with surrogateescape)."""
    env = {**os.environ, "DEEPSEEK_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "deepseek", "generate", "--checkpoint", str(trained_run), NOT_UTF8],
        capture_output=True, env=env, cwd=tmp_path, timeout=300,
    )
    err = proc.stderr.decode()
    assert proc.returncode == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: argument 4 ('\\xff\\xfe caf\\xe9') is not valid UTF-8")


@pytest.mark.parametrize(("what", "source", "words"), [
    ("a syntax error", b"def f(:\n", ["at line 1", "invalid syntax"]),
    ("not UTF-8", b"x = '\xff\xfe'\n", ["at line 1", "utf-8"]),
    ("a null byte", b"x = 1\x00\n", ["null bytes"]),
    ("an indented first line", b"  x = 1\n", ["at line 1", "unexpected indent"]),
])
def test_a_script_that_does_not_compile_is_refused(hostile: Hostile, what: str, source: bytes, words: list[str]) -> None:
    """``deepseek run`` compiles the script first (was internal error SyntaxError, exit 1)."""
    (hostile.work / "bad.py").write_bytes(source)
    hostile.refused("run", "bad.py", "--flag", expect=["run: 'bad.py' is not valid Python", *words])


def test_an_output_through_a_symbolic_link_is_written_where_it_points(tmp_path: Path) -> None:
    """The temp-file-and-rename write replaced the link itself with a regular file."""
    from deepseek.training.checkpoint_dirs import atomic_write_text

    target = tmp_path / "real.json"
    target.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    atomic_write_text(link, '{"a": 1}')
    assert link.is_symlink() and target.read_text() == '{"a": 1}'


def test_a_full_disk_while_saving_a_checkpoint_is_one_line(hostile: Hostile) -> None:
    """It was 'internal error: SafetensorError: ... No space left on device (os error 28)'."""
    full = hostile.work / "full"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(full)], capture_output=True).returncode:
        pytest.skip("needs a small tmpfs mount (root, mount(8)) to fill")
    try:
        done = hostile.run("train", *TINY, "--max-steps", "4", "--set", "checkpoint.interval=2",
                           "--run-dir", str(full / "run"))
        lines = done.stderr.strip().splitlines()
        assert done.code == 2 and len(lines) == 1, done.stderr
        assert lines[0].startswith(f"error: {full / 'run' / 'checkpoints'}: the disk is full: checkpoint step-2 could "
                                   "not be written, and nothing of it is kept"), lines[0]
        assert not [p for p in (full / "run" / "checkpoints").iterdir()]  # no temp folder left behind
    finally:
        subprocess.run(["umount", "--lazy", str(full)], capture_output=True)


@pytest.mark.parametrize(("option", "setting"), [
    (["--max-steps", "50"], "train.max_steps=3"),
    (["--max-steps", "0"], "train.max_steps=3"),  # the invalid option was dropped without a word
    (["--precision", "bf16"], "precision.dtype=\"fp32\""),
    (["--strategy", "single"], "strategy.name=\"single\""),
])
def test_an_option_and_a_set_of_its_key_are_refused(hostile: Hostile, option: list[str], setting: str) -> None:
    """``--set train.max_steps=3 --max-steps 50`` ran 3 steps, in either order."""
    key = setting.partition("=")[0]
    hostile.refused("config", "show", *option, "--set", setting,
                    expect=[f"{option[0]} {option[1]} and --set {setting} both set {key}; give one of them"])


@pytest.mark.parametrize("own", ["config.toml", "metrics.jsonl", "checkpoints/step-1/trainer.json",
                                 "checkpoints/latest"])
@pytest.mark.parametrize("argv", [["bench", "latency", "--model", "tiny", "--json"],
                                  ["export", "--checkpoint", "RUN", "--out"]],
                         ids=["bench-json", "export-out"])
def test_a_report_is_not_written_over_a_runs_own_file(hostile: Hostile, trained_run: Path, own: str,
                                                       argv: list[str]) -> None:
    """An output path naming a file the run's training wrote (its config, metrics, a checkpoint's
    file or pointer) replaced it with the report, losing the run (found with `compare --json
    RUN/config.toml`); a new file in the run folder stays allowed."""
    target = trained_run / own
    before = target.read_bytes()
    argv = [str(trained_run) if a == "RUN" else a for a in argv]
    hostile.refused(*argv, str(target), expect=[f"{target} is a file of the run folder {trained_run}",
                                                "give another path"])
    assert target.read_bytes() == before


@pytest.mark.parametrize("place", ["checkpoints/STEP/model.pt2", "checkpoints/model.pt2", "loss.png"])
def test_a_report_is_not_written_where_the_run_keeps_its_own_files(hostile: Hostile, trained_run: Path,
                                                                  place: str) -> None:
    """A new file inside a checkpoint folder was written (and deleted with the checkpoint when the
    run pruned it); one where the run writes its own later (its plot, with logging.plot off) was
    written and then replaced by the run. Refused, nothing written."""
    step = next((trained_run / "checkpoints").glob("step-*")).name
    target = trained_run / place.replace("STEP", step)
    assert not target.exists()
    hostile.refused("export", "--checkpoint", str(trained_run), "--out", str(target),
                    expect=[f"{target} is a place of the run folder {trained_run}'s own files", "give another path"])
    assert not target.exists()


def test_a_report_in_a_run_folder_is_written_again_and_never_suggested(hostile: Hostile, trained_run: Path,
                                                                       tmp_path: Path) -> None:
    """A report a command wrote into a run folder is not the run's: the same command writes it
    again. A refusal suggested `RUN/latency.json` even when that file already stood there; the
    suggestion is now a name nothing holds."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    for _ in range(2):
        outcome = hostile.run("bench", "latency", "--model", "tiny", "--seq", "16", "--warmup", "1",
                              "--only", "eager", "--json", str(run / "latency.json"))
        assert outcome.code == 0, outcome.stderr
        assert isinstance(json.loads((run / "latency.json").read_text()), dict)
    hostile.refused("bench", "latency", "--model", "tiny", "--json", str(run / "config.toml"),
                    expect=[f"{run / 'config.toml'} is a file of the run folder {run} (written by its training or the "
                            f"command that made it); give another path, e.g. {run / 'latency-2.json'}"])
