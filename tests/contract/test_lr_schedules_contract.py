"""Contract every registered learning-rate schedule meets: ``lr_at`` finite and ``>= 0`` over a
run, the same for the same step, and (for schedules that keep the base class's warm-up) ``lr``
reached at ``warmup_steps``."""

from __future__ import annotations

import math

import pytest
from _pairing import qualified_names

import deepseek
from deepseek.config.components import load_checked
from deepseek.plugins.host import get_host
from deepseek.training.schedule import LRSchedule

SCHEDULES = qualified_names("lr_schedule")
SETTINGS = [  # (lr, min_lr, warmup_steps, decay_steps)
    (3e-3, 1e-4, 30, 300),
    (1.0, 0.0, 0, 1),
    (1e-2, 1e-2, 10, 100),
    (5e-4, 0.0, 300, 200),  # warm-up longer than the decay
]


def test_core_schedules_registered() -> None:
    assert {"deepseek-core:cosine", "deepseek-core:linear", "deepseek-core:constant", "deepseek-core:wsd"} <= set(SCHEDULES)


@pytest.mark.parametrize("name", SCHEDULES, ids=SCHEDULES)
@pytest.mark.parametrize("setting", SETTINGS, ids=str)
def test_schedule_contract(name: str, setting: tuple[float, float, int, int]) -> None:
    cls = load_checked("lr_schedule", get_host().resolve("lr_schedule", name))
    assert issubclass(cls, LRSchedule)
    lr, min_lr, warmup, decay = setting
    schedule = deepseek.create_lr_schedule(name, lr=lr, min_lr=min_lr, warmup_steps=warmup, decay_steps=decay)
    rates = [schedule.lr_at(step) for step in range(1, 301)]
    assert all(math.isfinite(r) and r >= 0 for r in rates), f"{name}: {setting}"
    again = deepseek.create_lr_schedule(name, lr=lr, min_lr=min_lr, warmup_steps=warmup, decay_steps=decay)
    assert [again.lr_at(step) for step in range(300, 0, -1)] == rates[::-1]  # a function of the step only
    if warmup and cls.lr_at is LRSchedule.lr_at:  # the base class's linear warm-up
        assert schedule.lr_at(1) == pytest.approx(lr / warmup)
        assert schedule.lr_at(warmup) == pytest.approx(lr)
