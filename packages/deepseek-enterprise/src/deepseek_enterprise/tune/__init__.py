"""``deepseek tune``: automated tuning on Optuna (docs/tune.md).

``space`` (the search space file), ``tuner`` (the contract of a registered tuner), ``training``
and ``system`` (the two tuners enterprise registers), ``process`` (a trial's child process),
``storage`` (where a study lives, interrupted trials), ``study`` (the ask-and-tell loop),
``report`` (best.toml, trials.json, plots, the table), ``cli`` (the command).
"""
