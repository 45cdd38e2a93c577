"""A ``--storage journal:PATH`` file that is not Optuna's journal (bytes that are not UTF-8,
JSON that is not its records) is one line naming the file, exit 2, before any trial runs (it was
an internal error)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _inprocess import deepseek_here


@pytest.mark.parametrize(("content", "error"), [
    (b"\xff{not a journal\n", "UnicodeDecodeError"),
    (b"[1, 2]\n", "TypeError"),
    (b'{"op_code": 0}\n', "KeyError"),
])
def test_a_file_that_is_not_a_journal_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes,
                                                  error: str) -> None:
    (tmp_path / "c.toml").write_text('[train]\nmax_steps = 2\n')
    (tmp_path / "space.toml").write_text('[space]\n"train.lr" = { type = "float", low = 1e-4, high = 1e-2 }\n')
    (tmp_path / "j.log").write_bytes(content)
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "tune", "c.toml", "--study", "s", "--space", "space.toml",
                                 "--trials", "1", "--out", "study", "--storage", "journal:j.log")
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --storage: j.log is not a readable Optuna journal ({error}"), err
    assert lines[0].endswith("give this study's journal file, or a new path for a new study"), err
    assert not (tmp_path / "study" / "trials").exists()
    assert (tmp_path / "j.log").read_bytes() == content


def test_a_journal_whose_last_line_was_cut_short_is_repaired_and_the_study_goes_on(tmp_path: Path) -> None:
    """A worker killed mid-append leaves the journal's last line without its end. Optuna reads past
    it but appended the next op to the same line: that run's study went on, and from then on the
    journal did not read (JSONDecodeError, the study lost). The cut line is removed, said once,
    and the study continues from the complete lines."""
    import optuna

    from deepseek_enterprise.tune.storage import open_storage

    journal = tmp_path / "j.log"
    storage = open_storage(f"journal:{journal}", tmp_path)
    study = optuna.create_study(study_name="s", storage=storage)
    trial = study.ask()
    study.tell(trial, 1.5)
    whole = journal.read_bytes()
    open_storage(f"journal:{journal}", tmp_path)
    assert whole.endswith(b"\n") and journal.read_bytes() == whole  # a whole journal is left as it is
    journal.write_bytes(whole + b'{"op_code":4,"worker_id":"w","study_id":0,"datetime_st')  # the killed append
    with pytest.warns(UserWarning, match=r"j.log: its last line was cut short as it was written .*: 54 byte\(s\) "
                                         r"removed"):
        storage = open_storage(f"journal:{journal}", tmp_path)
    assert journal.read_bytes() == whole
    study = optuna.load_study(study_name="s", storage=storage)
    study.tell(study.ask(), 0.5)  # appends on a line of its own
    again = optuna.load_study(study_name="s", storage=open_storage(f"journal:{journal}", tmp_path))
    assert [t.value for t in again.trials] == [1.5, 0.5]
