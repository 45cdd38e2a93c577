"""Built-in encoders."""

from deepseek.hookspecs import RegisterFn, hookimpl


@hookimpl
def deepseek_register_encoders(register: RegisterFn) -> None:
    """``text.transformer``: bidirectional Transformer text encoder."""
    register(
        "text.transformer",
        "deepseek.models.encoder:TextTransformerEncoder",
        description="bidirectional Transformer over bytes, from the GPT blocks",
    )
