"""Recommendation rules and the cost table."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepseek.advise.estimate import TrainSetup, estimate_all, shape_from_config, shape_from_params
from deepseek.advise.recommend import parse_modalities, recommend
from deepseek.advise.tco import SEED_COSTS, load_costs, tco_dict
from deepseek.errors import ConfigError, UsageError
from deepseek.models.presets import preset_config

GiB = 1024**3


def _advise(shape, gpus: int, memory: int, modalities=("text",), batch: int = 8, seq: int = 2048, **kw):
    setup = TrainSetup(seq, batch, "bf16" if gpus else "fp32", gpus=gpus, **kw)
    est_kw = {"gpu_memory": memory, "headroom": 0.1, "overhead": GiB, "host_memory": 2048 * GiB}
    return recommend(shape, setup, modalities, estimate_all(shape, setup, **est_kw), **est_kw)


def test_one_gpu_that_fits_is_core_single() -> None:
    rec = _advise(shape_from_config(preset_config("small"), "small"), 1, 80 * GiB, seq=1024)
    assert (rec.edition, rec.strategy, rec.engine) == ("core", "single", "single")


def test_more_than_one_gpu_is_pro_and_prefers_ddp_when_it_fits() -> None:
    rec = _advise(shape_from_config(preset_config("small"), "small"), 2, 80 * GiB, seq=1024)
    assert (rec.edition, rec.strategy) == ("pro", "ddp")


def test_only_a_sharded_strategy_fits_picks_the_least_sharded() -> None:
    # 6.7B: 18 B/param for DDP is ~112 GiB; ZeRO-3 over 8 GPUs fits on 80 GiB cards
    shape = shape_from_params(6.7e9)
    rec = _advise(shape, 8, 80 * GiB, batch=1)
    setup = TrainSetup(2048, 1, "bf16", gpus=8)
    rows = {e.key: e for e in estimate_all(shape, setup, gpu_memory=80 * GiB)}
    assert not rows["ddp"].fits and rows["zero1"].fits
    assert (rec.edition, rec.strategy, rec.engine) == ("pro", "zero1", "deepspeed")
    rec1 = _advise(shape_from_params(6.7e9), 1, 80 * GiB, batch=1, activation_checkpointing=True)
    assert rec1.edition == "pro" and rec1.strategy in ("single+offload", "zero3+offload")


def test_modalities_beyond_text_need_enterprise() -> None:
    rec = _advise(shape_from_config(preset_config("small"), "small"), 1, 80 * GiB, ("text", "vision"), seq=1024)
    assert rec.edition == "enterprise" and rec.strategy == "single"
    assert any("multimodal" in n for n in rec.seed_notes)


def test_nothing_fits_gives_suggestions() -> None:
    rec = _advise(shape_from_params(70e9), 2, 24 * GiB, batch=8)
    assert rec.strategy is None and rec.edition == "pro"
    assert any("GPUs" in s for s in rec.suggestions)
    small = _advise(shape_from_config(preset_config("1.3b"), "1.3b"), 1, 24 * GiB, batch=16)
    assert small.strategy is None
    assert any("checkpointing" in s or "--batch" in s for s in small.suggestions)


def test_cpu_is_core_single() -> None:
    rec = _advise(shape_from_config(preset_config("tiny"), "tiny"), 0, 16 * GiB, seq=128)
    assert (rec.edition, rec.strategy) == ("core", "single")
    assert rec.to_dict()["installed"] is True  # the running edition: no install line to follow
    assert all(n.startswith("product guide: ") for n in rec.seed_notes)


def test_seed_notes_follow_model_scale() -> None:
    assert any("V1 core" in n for n in _advise(shape_from_params(1.3e9), 1, 80 * GiB).seed_notes)
    big = _advise(shape_from_params(13e9), 8, 80 * GiB, batch=1).seed_notes
    assert any("3.4B" in n for n in big) and any("V2 pro" in n for n in big)


def test_parse_modalities() -> None:
    assert parse_modalities(None) == ("text",)
    assert parse_modalities("Text, vision,vision") == ("text", "vision")
    with pytest.raises(UsageError, match="did you mean 'speech'"):
        parse_modalities("text,speach")


def test_seed_costs_are_the_defaults() -> None:
    rows = {r["edition"]: r for r in tco_dict(load_costs())["rows"]}
    assert [rows[e]["total"] for e in ("core", "pro", "enterprise")] == [75_000, 200_000, 550_000]
    assert rows["pro"]["break_even_benefit"] == 400_000
    assert rows["core"]["per_year"] == 25_000
    assert load_costs() == SEED_COSTS and "product document" in SEED_COSTS.source


def test_costs_from_file_and_overrides(tmp_path: Path) -> None:
    f = tmp_path / "costs.toml"
    f.write_text('years = 5\ncurrency = "EUR"\n[pro]\nhardware = 96000\n')
    costs = load_costs(f, ["enterprise.labor=1e6", "upgrade_factor=3"])
    assert costs.years == 5 and costs.currency == "EUR"
    assert costs.pro.hardware == 96_000 and costs.pro.labor == 120_000  # unset field keeps the seed's
    assert costs.enterprise.labor == 1_000_000 and costs.upgrade_factor == 3
    assert "overridden" in costs.source and str(f) in costs.source
    nested = tmp_path / "nested.toml"
    nested.write_text("[tco.core]\nlabor = 1\n")
    assert load_costs(nested).core.labor == 1


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["pro.hardwre=1"], "did you mean 'hardware'"),
        (["gold.labor=1"], "unknown edition"),
        (["core.labor=-5"], "must be >= 0"),
        (["years=0"], "must be > 0"),
        (["nonsense"], "EDITION.FIELD=VALUE"),
    ],
)
def test_bad_cost_overrides(overrides: list[str], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        load_costs(None, overrides)


def test_bad_cost_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="missing.toml: config file not found"):
        load_costs(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("years = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_costs(bad)


@pytest.mark.parametrize(("text", "message"), [
    # these named the key only ('tco.years: ...'), not the file it was in
    ("years = -1\n", "tco.years: must be > 0, got -1 (int)"),
    ("[pro]\nhardware = \"x\"\n", "tco.pro.hardware: expected a number, got 'x' (str)"),
    ("[tco]\n[tco.pro]\nlabor = 1e309\n", "tco.pro.labor: must be a finite number, got inf; give a finite value"),
    # the keys outside [tco] were dropped without a word
    ("[tco]\nyears = 4\n[pro]\nlabor = 1\n", "has a [tco] table and keys outside it (pro); put every key under [tco], "
                                              "or none"),
])
def test_a_bad_cost_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    Path("costs.toml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_costs("costs.toml", ["years=5"])
    assert str(info.value) == f"--costs: costs.toml: {message}"
    # a value of --cost is named with the option that gave it, after a good file
    Path("costs.toml").write_text("years = 4\n")
    with pytest.raises(ConfigError) as info:
        load_costs("costs.toml", ["years=5", "core.labor=-5"])
    assert str(info.value) == "--cost core.labor=-5: tco.core.labor: must be >= 0, got -5 (int)"
