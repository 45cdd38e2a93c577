"""Interoperability with other libraries' model formats (no third-party import at run time).

:mod:`deepseek.interop.gpt2`: the GPT as a Hugging Face ``GPT2LMHeadModel`` folder and back,
used by ``deepseek export --format hf`` and ``deepseek import-hf`` (docs/interop.md).
"""
