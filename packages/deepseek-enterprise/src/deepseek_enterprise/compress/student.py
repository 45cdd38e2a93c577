"""``distill.student``: the student of a ``distill`` run (:mod:`.distill`) as a model of its own.

This module imports no torch (the compressor declares ``loads_without_torch``): the job service
loads it to check a ``compress`` job's options for it at submit (it takes none: any ``--set`` is
refused with the line ``deepseek compress`` prints). The ``distill`` model it takes, and torch,
are imported when it checks a model.
"""

from __future__ import annotations

from typing import Any

from deepseek.errors import UsageError
from deepseek_enterprise.compress.compressor import Compressed, Compressor


class ExtractStudent(Compressor):
    """``distill.student``: the student of a ``distill`` run as a model of its own."""

    def check_model(self, model: Any, config: Any) -> None:
        from deepseek_enterprise.compress.distill import Distill

        if not isinstance(model, Distill):
            raise UsageError(f"distill.student: takes a run of the distill model; {config.model.name!r} "
                             "is not one")

    def compress(self, model: Any, config: Any, calibration: list[Any]) -> Compressed:
        import copy

        student = copy.deepcopy(model.student).eval()
        return Compressed(student, dict(model.student_table),
                          {"teacher": model.options.teacher, "temperature": model.options.temperature,
                           "alpha": model.options.alpha})
