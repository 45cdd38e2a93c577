"""Total cost of ownership per edition: the seed's 3-year table, configurable.

The defaults are the seed document's figures (section 3.3, "cost-benefit analysis"): over three
years, V1 core $15k hardware + $60k labour, V2 pro $80k + $120k, V3 enterprise $250k + $300k;
upgrade when the business benefit exceeds twice the edition's cost. Override them with a TOML
file (``--costs FILE``) and/or ``--cost EDITION.FIELD=VALUE``::

    years = 3
    currency = "USD"
    upgrade_factor = 2.0
    [pro]
    hardware = 96000
    labor = 120000
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepseek.errors import ConfigError, UsageError, shown

EDITIONS: tuple[str, ...] = ("core", "pro", "enterprise")
SEED_LABEL = "the product document's reference figures, 3-year costs (V1/V2/V3)"


MAX_AMOUNT = 1e15
"""The largest cost an edition's hardware or labour may be (a quadrillion currency units). Past
it the sums overflowed: 'pro.labor=1e308' printed a total of inf, and --json wrote Infinity,
which is not JSON."""

MAX_UPGRADE_FACTOR = 1e3
"""The largest ``upgrade_factor``: with :data:`MAX_AMOUNT`, every figure of the table is finite."""


def _non_negative(value: float) -> str | None:
    if not math.isfinite(value):
        return "must be a finite number"
    if value > MAX_AMOUNT:
        return f"must be at most {MAX_AMOUNT:.0e} (a cost in the table's currency)"
    return None if value >= 0 else "must be >= 0"


def _positive(value: float) -> str | None:
    if not math.isfinite(value):
        return "must be a finite number"
    return None if value > 0 else "must be > 0"


def _factor(value: float) -> str | None:
    problem = _positive(value)
    if problem is None and value > MAX_UPGRADE_FACTOR:
        return f"must be at most {MAX_UPGRADE_FACTOR:.0f} (the benefit that justifies an edition, per unit of cost)"
    return problem


@dataclass(frozen=True)
class EditionCost:
    """Cost of one edition over the period: hardware and labour."""

    hardware: float = field(default=0.0, metadata={"check": _non_negative})
    labor: float = field(default=0.0, metadata={"check": _non_negative})

    @property
    def total(self) -> float:
        """Hardware plus labour."""
        return self.hardware + self.labor


@dataclass(frozen=True)
class CostModel:
    """Costs of the three editions over ``years``; ``source`` says where the numbers came from."""

    years: int = field(default=3, metadata={"check": _positive})
    currency: str = "USD"
    upgrade_factor: float = field(default=2.0, metadata={"check": _factor})
    core: EditionCost = EditionCost(hardware=15_000, labor=60_000)
    pro: EditionCost = EditionCost(hardware=80_000, labor=120_000)
    enterprise: EditionCost = EditionCost(hardware=250_000, labor=300_000)
    source: str = SEED_LABEL


SEED_COSTS = CostModel()
"""The seed document's figures."""


def _load_toml(path: Path) -> dict[str, Any]:
    from deepseek.config.load import read_toml

    try:
        data = read_toml(path, missing_hint="give a TOML file of edition costs (format: docs/advise.md)")
    except ConfigError as exc:
        raise ConfigError(f"--costs: {exc}") from None
    if not isinstance(data.get("tco"), dict):
        return data
    others = [k for k in data if k != "tco"]
    if others:  # they were dropped without a word
        raise ConfigError(f"--costs: {shown(path)}: has a [tco] table and keys outside it ({', '.join(others)}); "
                          "put every key under [tco], or none")
    return data["tco"]


def _checked(data: dict[str, Any], where: str) -> CostModel:
    """``data`` as a :class:`CostModel`; a :class:`ConfigError` begins with ``where`` (the file or
    the ``--cost`` option the last values came from)."""
    from deepseek.config.validate import build_dataclass

    try:
        return build_dataclass(CostModel, data, path="tco")
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _parse_override(text: str) -> tuple[list[str], Any]:
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not key.strip() or len(parts) > 2:
        raise UsageError(
            f"--cost: cannot read {text!r}; write EDITION.FIELD=VALUE (e.g. pro.hardware=96000) or years=5"
        )
    raw = raw.strip()
    value: Any = raw
    for conv in (int, float):
        try:
            value = conv(raw)
            break
        except ValueError:
            continue
    return parts, value


def load_costs(path: str | Path | None = None, overrides: tuple[str, ...] | list[str] = ()) -> CostModel:
    """The seed's costs, then ``path``'s values, then ``overrides`` (``pro.labor=150000``).

    Unknown keys and negative values raise :class:`ConfigError` naming the key and the file or
    ``--cost`` option that gave it.
    """
    data: dict[str, Any] = {
        k: (dataclasses.asdict(v) if isinstance(v, EditionCost) else v)
        for k, v in dataclasses.asdict(SEED_COSTS).items()
    }
    changed: list[str] = []
    if path is not None:
        for key, value in _load_toml(Path(path)).items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        _checked(data, f"--costs: {shown(path)}")  # checked before --cost: an error names the file
        changed.append(shown(path))
    for text in overrides:
        parts, value = _parse_override(text)
        if len(parts) == 2:
            if not isinstance(data.get(parts[0]), dict):
                raise ConfigError(
                    f"--cost {text}: unknown edition {parts[0]!r}; choose from {', '.join(EDITIONS)}"
                )
            data[parts[0]] = {**data[parts[0]], parts[1]: value}
        else:
            data[parts[0]] = value
        _checked(data, f"--cost {text}")
        changed.append("--cost")
    if changed:
        data["source"] = f"{SEED_LABEL}, overridden by {', '.join(dict.fromkeys(changed))}"
    return _checked(data, "--costs")


def tco_rows(costs: CostModel) -> list[dict[str, Any]]:
    """One row per edition: hardware, labour, total, per year and the benefit that justifies it."""
    rows = []
    for edition in EDITIONS:
        c: EditionCost = getattr(costs, edition)
        rows.append({
            "edition": edition,
            "hardware": c.hardware,
            "labor": c.labor,
            "total": c.total,
            "per_year": c.total / costs.years,
            "break_even_benefit": c.total * costs.upgrade_factor,
        })
    return rows


def tco_dict(costs: CostModel) -> dict[str, Any]:
    """JSON-ready table with its assumptions."""
    return {
        "years": costs.years,
        "currency": costs.currency,
        "upgrade_factor": costs.upgrade_factor,
        "source": costs.source,
        "rows": tco_rows(costs),
    }
