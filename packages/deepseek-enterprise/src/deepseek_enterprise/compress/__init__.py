"""Model compression (enterprise): the Compressor contract (``compressor.py``), structured
pruning of a GPT's MLP channels (``prune.py``), the compressed run folder (``output.py``) and
``deepseek compress`` (``cli.py``). docs/compress.md."""

LOADS_WITHOUT_TORCH = "loads_without_torch"
"""What a compressor declares at registration, ``register(..., declares={"loads_without_torch":
True})``, when importing its module imports no torch: the job service, whose process never
imports torch, then checks its options (a compress job's ``--set``, a recipe step's) at submit
(:func:`.compressor.check_without_torch`); a compressor that does not declare it is checked
when the job runs."""
