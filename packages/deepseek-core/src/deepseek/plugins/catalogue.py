"""First-party components that live in other editions, for edition-aware "not found" errors."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from deepseek.plugins.install import install_command
from deepseek.plugins.kinds import registration_hook_of

if TYPE_CHECKING:
    from deepseek.plugins.records import PluginRecord

EDITIONS: dict[str, str] = {
    "deepseek-core": "core (V1)",
    "deepseek-pro": "pro (V2)",
    "deepseek-enterprise": "enterprise (V3)",
}
"""First-party distribution -> edition label."""

CATALOGUE: dict[tuple[str, str], str] = {
    **{
        ("strategy", n): "deepseek-pro"
        for n in ("ddp", "fsdp", "zero3", "deepspeed", "pipeline", "hybrid", "tp")
    },
    ("command", "launch"): "deepseek-pro",
    ("command", "checkpoint"): "deepseek-pro",
    ("encoder", "vision.swin"): "deepseek-enterprise",
    ("encoder", "audio.conv_transformer"): "deepseek-enterprise",
    ("model", "multimodal.classifier"): "deepseek-enterprise",
    ("model", "distill"): "deepseek-enterprise",
    ("model", "quantized"): "deepseek-enterprise",
    ("dataset", "multimodal.digits"): "deepseek-enterprise",
    ("command", "multimodal"): "deepseek-enterprise",
    ("command", "tune"): "deepseek-enterprise",
    ("command", "compare"): "deepseek-enterprise",
    ("command", "compress"): "deepseek-enterprise",
    ("command", "server"): "deepseek-enterprise",
    ("command", "jobs"): "deepseek-enterprise",
    ("command", "tenants"): "deepseek-enterprise",
}
"""(kind, name) -> the first-party distribution that registers it. Only what an edition really
registers belongs here: tests/contract checks every entry against the installed editions."""

DECLARED: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {
    ("strategy", "ddp"): {"memory_rows": ("ddp",)},
    ("strategy", "fsdp"): {"memory_rows": ("zero3", "zero3+offload")},
    ("strategy", "deepspeed"): {"memory_rows": ("single+offload", "zero1", "zero1+offload", "zero2", "zero2+offload")},
    ("strategy", "tp"): {"memory_rows": ("tp", "tp+sp")},
}
"""What those components declare at registration (``register(..., declares=...)``), for tools
that describe an edition that is not installed (the advisor's memory rows). tests/contract checks
every entry against what the installed edition really declares."""

KIND_PROVIDERS: dict[str, str] = {
    "fusion": "deepseek-enterprise",
    "compressor": "deepseek-enterprise",
    "tuner": "deepseek-enterprise",
    "executor": "deepseek-enterprise",
}
"""Component kinds that a first-party edition adds through hookspecs of its own."""


def provider_of(kind: str, name: str) -> str | None:
    """The first-party distribution providing ``kind``/``name``, if any."""
    return CATALOGUE.get((kind, name))


def kind_provider(kind: str) -> str | None:
    """The first-party distribution whose hookspecs add the component kind ``kind``, if any."""
    return KIND_PROVIDERS.get(kind)


def edition_of(dist: str) -> str:
    """Edition label of a distribution (``third-party`` for everything not first-party)."""
    return EDITIONS.get(dist, "third-party")


SCRIPT_COMPONENT = "script"
"""The model and dataset name ``deepseek.fit`` gives a script's own objects
(:mod:`deepseek.training.script`): registered only on the host of that script's run."""


def unavailable_reason(kind: str, name: str, records: Mapping[str, PluginRecord]) -> str | None:
    """Why a first-party component is unavailable (not installed, disabled, broken), or ``None``.

    ``records`` are the host's plugin records by distribution. Returns ``None`` for names that
    no first-party edition provides, or when the providing edition is loaded fine.
    """
    if name == SCRIPT_COMPONENT and kind in ("model", "dataset"):
        return (
            f"{kind} {name!r} is the {kind} object of a Python script trained with deepseek.fit, which "
            "only that script can build; load its weights into the script's model there with "
            "deepseek.load_model(RUN, model=YourModel()), or evaluate it with deepseek.evaluate(model, data, "
            "checkpoint=RUN)"
        )
    provider = provider_of(kind, name)
    if provider is None:
        return None
    return _provider_unavailable(f"{kind} {name!r} is provided by", provider, records)


def unloaded_namesake(name: str, records: Mapping[str, PluginRecord]) -> str:
    """For a component name in a plugin's namespace (``acme.signsgd``), a note naming the
    installed distribution of that name (``deepseek-acme``, docs/plugins.md section 2) when it did
    not load (disabled, blocked, failed); else a note naming a plugin that failed to load (it may
    have registered the name); else ``""``."""
    def canonical(dist: str) -> str:
        return dist.lower().replace("_", "-").replace(".", "-")

    prefix = name.partition(".")[0] if "." in name else ""
    record = next((r for d, r in records.items() if prefix and canonical(d) == f"deepseek-{canonical(prefix)}"), None)
    if record is not None and record.status != "ok":
        return f"; {record.dist} {record.version} is installed but {record.why_unloaded()}"
    # A plugin whose registration failed may have been the one to register it, whatever its names
    failed = [r for r in records.values() if r.status == "failed" and r is not record]
    if not failed:
        return ""
    first = failed[0]
    more = f" (and {len(failed) - 1} more plugin(s): see 'deepseek plugins list')" if len(failed) > 1 else ""
    return f"; {first.dist} {first.version} {first.why_unloaded()}, so what it registers is missing{more}"


def unloaded_command_owner(name: str, records: Mapping[str, PluginRecord]) -> str | None:
    """For a command no loaded plugin registers, the one-line error naming the third-party
    distribution that did not load (disabled, blocked, failed) and whose namespace the command is
    in: its first word (``acme`` of ``acme-summary`` or ``acme.summary``) is the name of one of its
    entry points or its name without ``deepseek-``. ``None`` when no such distribution is
    installed. Read from the records alone: a disabled plugin's code is never imported."""
    word = re.split(r"[-.]", name, maxsplit=1)[0]
    for record in sorted(records.values(), key=lambda r: r.dist):
        if record.status == "ok" or record.dist in EDITIONS:
            continue
        short = record.dist.removeprefix("deepseek-")
        for plugin, module in zip(record.plugins, record.modules, strict=True):
            if word in (plugin, short):
                return (f"command {name!r} is not loaded: it is named for plugin {plugin!r} ({module}) of "
                        f"{record.dist} {record.version}, which is installed but {record.why_unloaded()}")
    return None


def unloaded_third_party(name: str, records: Mapping[str, PluginRecord]) -> str:
    """A note for unknown command ``name`` naming the third-party distributions that did not load,
    or ``""``. Whether one of them registers ``name`` cannot be told: a plugin registers its
    commands in code (``deepseek_register_commands``), which is not imported while it is not
    loaded, and its entry points name only its modules; so the note says that, not a guess."""
    off = sorted((r for r in records.values() if r.status != "ok" and r.dist not in EDITIONS), key=lambda r: r.dist)
    if not off:
        return ""
    first = off[0]
    more = f" (and {len(off) - 1} more: see 'deepseek plugins list')" if len(off) > 1 else ""
    which = "one of them" if more else "it"
    return (f"; {first.dist} {first.version} is installed but {first.why_unloaded()}{more}: whether {which} registers "
            f"{name!r} is known only once it loads (a plugin registers its commands in its code, which is not "
            "imported while it is not loaded)")


def kind_unavailable_reason(kind: str, records: Mapping[str, PluginRecord]) -> str | None:
    """Why a component kind that a first-party edition adds is unknown, or ``None`` (as
    :func:`unavailable_reason`, for kinds)."""
    provider = kind_provider(kind)
    if provider is None:
        return None
    return _provider_unavailable(f"component kind {kind!r} is added by", provider, records)


def hook_unavailable_reason(hook: str, records: Mapping[str, PluginRecord]) -> str | None:
    """Why a plugin's implementation of a first-party edition's registration hook has no spec
    (``deepseek_register_fusions`` with deepseek-enterprise absent or not loaded), or ``None``."""
    provider = next((p for k, p in KIND_PROVIDERS.items() if registration_hook_of(k) == hook), None)
    if provider is None:
        return None
    record = records.get(provider)
    if record is not None and record.status == "ok":
        return None
    return _provider_unavailable(f"hook {hook!r}; that hook is specified by", provider, records)


def _provider_unavailable(
    what: str, provider: str, records: Mapping[str, PluginRecord]
) -> str | None:
    record = records.get(provider)
    if record is None:
        return (
            f"{what} {provider} ({edition_of(provider)}), which is not installed; "
            f"install it with: {install_command(provider)}"
        )
    if record.status == "ok":
        return None
    return f"{what} {provider} {record.version}, which is installed but {record.why_unloaded()}"
