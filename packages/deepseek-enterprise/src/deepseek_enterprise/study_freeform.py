"""The free-form parts of a results line (:func:`deepseek_enterprise.study_report.check_row`, after
it checked their types): ``machine``'s counts, and every text a results line may carry beyond its
fixed words: ``machine``'s keys and names (``cpu``, ``gpu``, ``cpu_capability``, version strings),
``latency.device`` (the latency lines print it) and ``started_from``'s modalities and run folders.
A text is printable (no control character: a newline or a terminal escape would be printed as it
is) and bounded by one rule: at most :data:`TEXT_MAX` characters, a run folder at most
:data:`PATH_MAX` (Linux's longest path)."""

from __future__ import annotations

from typing import Any

MACHINE_COUNT_MAX = 2**16
"""The largest count a results line's ``machine`` may give (``cpu_count``, ``threads``): Linux counts 8192 CPUs at most."""
TEXT_MAX = 200
"""The longest name a results line may give (a CPU's or GPU's name, a version, a device): a few dozen characters."""
PATH_MAX = 4096
"""The longest run folder a results line's ``started_from`` may give."""


def text_problem(field: str, value: str, limit: int = TEXT_MAX) -> str | None:
    """What is wrong with the text ``value`` of ``field`` (None: nothing): longer than ``limit``, or
    holding a character that is not printable."""
    if len(value) > limit:
        return f"{field} holds {len(value)} characters, more than its {limit}"
    bad = next((i for i, c in enumerate(value) if not c.isprintable()), None)
    if bad is not None:
        return f"{field} {value[:60]!r} holds a control or non-printing character ({value[bad]!r} at {bad})"
    return None


def freeform_problem(row: dict[str, Any]) -> str | None:
    """What is wrong with ``row``'s ``machine`` counts or its texts (None: nothing); their types are checked."""
    machine = row.get("machine") or {}
    big = next((k for k, v in machine.items() if isinstance(v, int) and v > MACHINE_COUNT_MAX), None)
    if big is not None:  # cpu_count, threads
        return f"machine.{big} {machine[big]} is more than 2^16 (65536), more than a machine counts"
    texts: list[tuple[str, str, int]] = []
    for key, value in machine.items():
        texts.append(("a key of machine", key, TEXT_MAX))
        if isinstance(value, str):
            texts.append((f"machine.{key}", value, TEXT_MAX))
    for modality, folder in (row.get("started_from") or {}).items():
        texts += [("a modality of started_from", modality, TEXT_MAX), (f"started_from.{modality}", folder, PATH_MAX)]
    if isinstance(row.get("latency"), dict):
        texts += [(f"latency.{k}", v, TEXT_MAX) for k, v in row["latency"].items() if isinstance(v, str)]
    return next((p for field, value, limit in texts if (p := text_problem(field, value, limit))), None)
