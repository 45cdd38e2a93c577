"""The variants ``deepseek bench latency`` times, by name, and its ``--only`` checked against them.

Nothing here imports torch: the command checks ``--only`` before it builds a model, and the job
service at submit (:func:`deepseek.cli.bench_cmd.latency_arguments`).
:func:`deepseek.bench.latency.build_variants` builds exactly the variants named here.
"""

from __future__ import annotations


def variant_names(device_type: str, decode: bool, reduced: bool) -> list[str]:
    """The variants timed on a device of ``device_type`` (``cpu``, ``cuda``), in their order:
    eager, ``torch.compile``, its freezing variant on the CPU or CUDA graphs elsewhere,
    ``deepseek.optimize``; with ``decode`` (a GPT's KV-cached step) the static-cache step; with
    ``reduced`` deepseek.optimize's opt-in bf16 and int8 paths."""
    names = ["eager", "torch.compile",
             "torch.compile+freezing" if device_type == "cpu" else "torch.compile reduce-overhead", "deepseek.optimize"]
    if decode:
        names.append("deepseek static-cache graph" if device_type == "cuda" else "deepseek static-cache")
    if reduced:
        names += ["deepseek.optimize bf16", "deepseek.optimize int8"]
    return names


def check_only(only: list[str] | tuple[str, ...] | None, device_type: str, mode: str, decode: bool,
               reduced: bool) -> None:
    """One line for an ``--only`` name that is no variant timed here (:func:`variant_names`),
    with the closest one."""
    from deepseek.errors import UsageError
    from deepseek.names import closest

    names = variant_names(device_type, decode, reduced)
    for name in only or []:
        if name not in names:
            close = closest(name, names)
            hint = f"did you mean {close!r}? " if close else ""
            raise UsageError(f"--only: no variant {name!r} for --mode {mode} on {device_type}; {hint}"
                             f"choose from {', '.join(names)}")
