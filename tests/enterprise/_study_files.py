"""The tune config, search space and folder snapshot of the study-database tests
(test_tune_study_db.py, test_tune_study_resume.py)."""

from __future__ import annotations

from pathlib import Path

CONFIG = '[train]\nmax_steps = 2\n'
SPACE = '[space]\n"train.lr" = { type = "float", low = 1e-4, high = 1e-2 }\n'


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
