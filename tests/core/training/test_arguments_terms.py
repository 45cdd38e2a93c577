"""deepseek.arguments: one message names what its reader typed: Python's keyword, ``deepseek
train``'s option, or the option of a command that runs the trainer itself (command_terms:
``deepseek multimodal study`` names ``--out``, and a resumed run by its folder alone)."""

from __future__ import annotations

from pathlib import Path

from deepseek.arguments import command_line, command_terms, given, spelled

TERMS = {"--run-dir / logging.name": "--out", "--resume": ""}


def test_each_reader_gets_its_own_words() -> None:
    def words() -> tuple[str, str, str]:
        return (spelled("--run-dir / logging.name", "run_dir= / logging.name"), given("--resume", "resume", Path("r")),
                spelled("--max-steps", "train.max_steps"))

    assert words() == ("run_dir= / logging.name", "resume='r'", "train.max_steps")
    with command_line():
        assert words() == ("--run-dir / logging.name", "--resume r", "--max-steps")
    with command_terms(TERMS):  # a wording the command does not give is the command line's
        assert words() == ("--out", "r", "--max-steps")
        assert given("--batches", "batches", 3) == "--batches 3"
    # left as they were, nested or not
    assert words() == ("run_dir= / logging.name", "resume='r'", "train.max_steps")
    with command_line(), command_terms(TERMS):
        assert words()[0] == "--out"
    with command_terms(TERMS), command_line():
        assert words()[0] == "--out"
