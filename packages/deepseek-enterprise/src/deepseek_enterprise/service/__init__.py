"""The multi-tenant job service (docs/service.md): ``deepseek server`` and its clients.

``models`` (the tables: tenants, users, memberships, tokens, quotas, jobs, the audit log),
``store`` (engine, SQLite WAL and the append-only guard, transactions, bootstrap), ``tokens``
(API tokens: random, shown once, stored as an scrypt hash), ``auth`` (bearer tokens to a
principal, role checks), ``quotas`` (refusals at submit, the fair-share pick), ``jobpaths`` (a
job's arguments and files kept inside the tenant's workspace), ``executor`` (the local executor:
process groups, scrubbed environment, devices, host limits, cancel, recovery), ``cgroups``
(cgroup v2 per job where writable, else rlimits), ``gpushare`` (whole or shared GPUs),
``gpucap`` (a sharing job's GPU memory cap), ``child`` (the wrapper each job runs under), ``scheduler`` (the loop in the server process), ``api`` / ``api_admin`` /
``api_jobs`` (the HTTP API), ``client`` (httpx), ``cli`` (``deepseek server|jobs|tenants``).
"""
