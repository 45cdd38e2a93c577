"""Hook specifications added by the enterprise edition."""

from deepseek.hookspecs import RegisterFn, hookspec
from deepseek.plugins.registrar import reserves
from deepseek_enterprise.study_recipes import UNIMODAL


@reserves({name: f"'deepseek multimodal study --config {name}' and the study's tables name the {name}-only model so"
           for name in UNIMODAL})
@hookspec
def deepseek_register_fusions(register: RegisterFn) -> None:
    """Register multimodal fusion methods (kind ``fusion``).

    ``target`` is a subclass of :class:`deepseek_enterprise.fusion.Fusion` with ``Options``,
    created by a multimodal model as ``target(options, dims={modality: width}, num_classes=n)``;
    its ``forward(features, present)`` returns a ``FusionOutput`` (fused logits, per-modality
    logits, pooled embeddings) for any subset of present modalities. Enterprise registers
    ``concat``, ``late`` and ``cross_attention``. The names ``vision``, ``audio`` and ``text``
    are refused (the plugin keeps nothing it registered): ``deepseek multimodal study --config``
    and its tables name the unimodal models so.
    """


@hookspec
def deepseek_register_compressors(register: RegisterFn) -> None:
    """Register model compressors (kind ``compressor``): methods of ``deepseek compress``.

    ``target`` is a subclass of :class:`deepseek_enterprise.compress.compressor.Compressor` with
    ``Options`` (from ``deepseek compress --set KEY=VALUE``), created as ``target(options,
    host=host)``; ``check_model(model, config)`` refuses a model it cannot take and
    ``compress(model, config, calibration)`` returns a ``Compressed`` (the new model, the
    ``[model]`` table that rebuilds it, a record of what was done, what loading it needs).
    ``deepseek compress`` calls ``apply(model, config, context)`` (default: ``compress`` with the
    context's calibration batches), which a step needing the original or training overrides.
    A compressor whose module imports no torch may say so, ``register(..., declares={
    "loads_without_torch": True})``: the job service then checks its options at submit.
    Enterprise registers ``prune.ffn``, ``recover`` and others; docs/compress.md.
    """


@hookspec
def deepseek_register_tuners(register: RegisterFn) -> None:
    """Register automated tuners (kind ``tuner``): kinds of ``deepseek tune`` study.

    ``target`` is a subclass of :class:`deepseek_enterprise.tune.tuner.Tuner` with ``Options``
    (the ``[tuner]`` table of the space file) and ``objectives`` (names it measures; ``val_*`` is
    a prefix), created as ``target(options, host=host)``. Per trial, ``deepseek tune`` calls
    ``skip_reason(config)`` (a reason: recorded as pruned, not run) and ``run(trial)``, which
    returns the objective's value, reports intermediate values with ``trial.report(step,
    value)`` (True: the pruner stops it, raise ``TrialStopped``) and raises ``TrialFailed`` for a
    trial that broke. Enterprise registers ``training`` and ``system``; docs/tune.md.
    """


@hookspec
def deepseek_register_executors(register: RegisterFn) -> None:
    """Register job executors (kind ``executor``): where ``deepseek server --executor NAME`` runs
    jobs.

    ``target`` is a subclass of :class:`deepseek_enterprise.service.executor.Executor`, created
    as ``target(root, grace_s=S)`` (a subclass of ``LocalExecutor`` also gets ``limits=``, the
    host limits the server detected); the server's scheduler calls ``reserve(job_id)`` before it
    commits the job ``starting`` (forget an earlier start's leftovers; return what identifies
    this start, such as the Slurm job name, given back as ``launch.ref``), ``start(launch)`` (a
    ``Started``: the executor's handle on the job, ``pid`` and ``pid_start``, which the database
    keeps: a process id and its start time for ``local``, the Slurm job id and job name for
    ``slurm``; the workspace; the job runs with ``launch.plugin_env``, its server's plugin
    settings as ``DEEPSEEK_*`` variables, in its environment), ``find(launch)`` after a restart for a job left ``starting`` (its
    ``Started`` if it was launched, None if never: it is queued again; the default finds
    nothing), ``finished(job_id, pid, pid_start, workspace)`` (the exit code, None while it
    runs, False when it is gone without one, ``UNREADABLE`` when its exit code cannot be
    trusted), ``reason(job_id, workspace)`` (why a finished job failed, one line),
    ``terminate``/``kill`` (a cancel) and ``close``; at every submit, ``at_start(path,
    has_config, files)``: what a path the job names is in the workspace ``start`` gives it
    (``"config"``, ``"file"``, ``"absent"`` or ``"unknown"``), by which the job's files are read
    (the default: the local and Slurm layout, the job's config.toml and files and nothing else;
    override it where the workspace holds more). ``start`` and ``finished`` must be
    implemented (the base class raises ``NotImplementedError``); the others have defaults, and
    ``shares_gpus = True`` declares that it caps a shared job's GPU memory. A job's command line
    alone is changed by subclassing ``LocalExecutor`` and overriding ``argv(launch)``.
    Enterprise registers ``local`` and ``slurm``; docs/service.md and docs/plugins.md section 7.
    """
