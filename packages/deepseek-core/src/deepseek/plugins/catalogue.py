"""First-party components that live in other editions, for edition-aware "not found" errors."""

from __future__ import annotations

from deepseek._version import __version__

EDITIONS: dict[str, str] = {
    "deepseek-core": "core (V1)",
    "deepseek-pro": "pro (V2)",
    "deepseek-enterprise": "enterprise (V3)",
}
"""First-party distribution -> edition label."""

CATALOGUE: dict[tuple[str, str], str] = {
    **{
        ("strategy", n): "deepseek-pro"
        for n in ("ddp", "fsdp", "zero3", "deepspeed", "pipeline", "hybrid")
    },
    ("command", "launch"): "deepseek-pro",
    **{
        ("encoder", n): "deepseek-enterprise"
        for n in ("vision.swin", "speech.conv-transformer", "fusion.cross-attention")
    },
    **{("command", n): "deepseek-enterprise" for n in ("compress", "tune", "tenants")},
}
"""(kind, name) -> the first-party distribution that provides it."""


def provider_of(kind: str, name: str) -> str | None:
    """The first-party distribution providing ``kind``/``name``, if any."""
    return CATALOGUE.get((kind, name))


def install_command(dist: str) -> str:
    """The pip command that installs a first-party distribution matching this core."""
    return f"pip install {dist}=={__version__}"


def edition_of(dist: str) -> str:
    """Edition label of a distribution (``third-party`` for everything not first-party)."""
    return EDITIONS.get(dist, "third-party")
