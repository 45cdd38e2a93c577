"""Built-in experiment trackers; each imports its library only when a run uses it."""

from deepseek.hookspecs import RegisterFn, hookimpl


@hookimpl
def deepseek_register_trackers(register: RegisterFn) -> None:
    """``tensorboard``, ``mlflow`` and ``wandb`` (the extras of the same names)."""
    register("tensorboard", "deepseek.tracking.tensorboard_tracker:TensorBoardTracker",
             description="TensorBoard event files in the run folder")
    register("mlflow", "deepseek.tracking.mlflow_tracker:MLflowTracker",
             description="an MLflow run in a local mlruns folder or on a tracking server")
    register("wandb", "deepseek.tracking.wandb_tracker:WandbTracker",
             description="a Weights & Biases run (offline unless an API key is set)")
