"""Model compression (enterprise): the Compressor contract (``compressor.py``), structured
pruning of a GPT's MLP channels (``prune.py``), the compressed run folder (``output.py``) and
``deepseek compress`` (``cli.py``). docs/compress.md."""
