"""The cluster consistency check of a multi-process job: every rank must run the same framework,
torch and plugin distributions at the same versions (and plugin settings) before any training
starts (:meth:`deepseek_pro.strategies.base.DistributedStrategy.check_cluster` all-gathers each
rank's :func:`cluster_report` and refuses with the first difference :func:`compare_reports` finds)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from deepseek.errors import UsageError


class ClusterMismatchError(UsageError):
    """Ranks of one job run different plugin sets, plugin versions or framework versions."""


def cluster_report(host: Any = None) -> dict[str, Any]:
    """What this process runs: the plugin distributions of ``host`` (default: the process's host;
    name, version, status) and library versions."""
    import torch

    from deepseek._version import __version__
    from deepseek.plugins.host import get_host

    dists = {dist: f"{version} ({status})" for dist, version, status in (host or get_host()).fingerprint()}
    return {"distributions": dists, "deepseek": __version__, "torch": torch.__version__}


def compare_reports(reports: Sequence[Mapping[str, Any]]) -> str | None:
    """One line naming the first rank and distribution that differ from rank 0, or ``None``."""
    ref = reports[0]
    for rank, rep in enumerate(reports[1:], start=1):
        for lib in ("deepseek", "torch"):
            if rep[lib] != ref[lib]:
                return (f"cluster mismatch: rank {rank} runs {lib} {rep[lib]} but rank 0 runs "
                        f"{ref[lib]}; install the same versions on every node")
        ours, theirs = ref["distributions"], rep["distributions"]
        for dist in sorted(set(ours) | set(theirs)):
            a, b = ours.get(dist, "not installed"), theirs.get(dist, "not installed")
            if a != b:
                return (f"cluster mismatch: rank {rank} has {dist} {b} but rank 0 has {dist} {a}; "
                        "install the same plugin distributions and versions (and the same "
                        "DEEPSEEK_PLUGINS / DEEPSEEK_DISABLE_PLUGINS settings) on every node")
    return None
