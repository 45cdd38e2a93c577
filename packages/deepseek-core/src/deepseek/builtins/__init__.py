"""Core's own features, registered through the same hooks as any plugin (pytest's default_plugins)."""

BUILTIN_PLUGINS: tuple[str, ...] = (
    "deepseek.builtins.models",
    "deepseek.builtins.datasets",
    "deepseek.builtins.strategies",
    "deepseek.builtins.training",
    "deepseek.builtins.passes",
    "deepseek.builtins.encoders",
    "deepseek.builtins.trackers",
    "deepseek.builtins.commands",
)
