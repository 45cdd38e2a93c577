"""deepseek-pro's entry-point plugin: registers strategies and the launcher lazily."""

from deepseek.hookspecs import RegisterFn, hookimpl


@hookimpl
def deepseek_register_strategies(register: RegisterFn) -> None:
    """Distributed strategies (filled in by the pro issue)."""
