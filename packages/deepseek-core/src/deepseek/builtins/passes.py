"""Built-in graph-optimizer passes (see deepseek.optimize)."""

from deepseek.hookspecs import RegisterFn, hookimpl


@hookimpl
def deepseek_register_passes(register: RegisterFn) -> None:
    """The deploy-time graph passes."""
    # Filled in by the graph optimizer (issue 4).
