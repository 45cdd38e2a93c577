"""Built-in datasets."""

from deepseek.hookspecs import RegisterFn, hookimpl


@hookimpl
def deepseek_register_datasets(register: RegisterFn) -> None:
    """``text``: byte tokens of the embedded corpus or of your text files, packed."""
    register("text", "deepseek.data.text:TextDataset",
             description="byte tokens of the embedded stdlib corpus or your text files, packed")
