"""Built-in datasets."""

from deepseek.hookspecs import RegisterFn, hookimpl


@hookimpl
def deepseek_register_datasets(register: RegisterFn) -> None:
    """``text``: tokens of the embedded corpus or of your text files; ``hf``: local files read by
    Hugging Face ``datasets``; both packed into rows of token ids."""
    register("text", "deepseek.data.text:TextDataset",
             description="byte (or data.tokenizer BPE) tokens of the embedded stdlib corpus or your text files, packed")
    register("hf", "deepseek.data.hf:HFDataset",
             description="local JSON lines, Parquet, CSV or text files streamed by Hugging Face datasets, "
             "packed (pip install 'deepseek-core[hf]')")
