"""Built-in model presets."""

from deepseek.hookspecs import RegisterFn, hookimpl


@hookimpl
def deepseek_register_models(register: RegisterFn) -> None:
    """GPT presets: tiny (CPU demo), small (768/12/12), 1.3b (2048/16/24); and gpt, every
    shape spelled out (GPTConfig's defaults, what ``deepseek import-hf`` writes)."""
    register("gpt", "deepseek.models.gpt:GPT", description="GPT of any shape (GPTConfig; defaults 768/12/12)")
    register("tiny", "deepseek.models.presets:tiny", description="GPT, CPU demo and tests")
    register("small", "deepseek.models.presets:small", description="GPT, 768 hidden, 12 heads, 12 layers")
    register("1.3b", "deepseek.models.presets:gpt_1_3b", description="GPT, ~1.3B parameters")
