"""``deepseek launch``: torchrun's elastic agent with validation before spawning, a sane worker
environment, and failure reports (dead rank, hung rank) instead of silent hangs.

Modules: :mod:`.cli` (the click command), :mod:`.checks` (what must fit before any process
starts), :mod:`.env` (worker environment), :mod:`.runner` (the agent and the failure report),
:mod:`.heartbeat` (progress beats and the hang watchdog), :mod:`.worker` (each worker's entry).
None of them imports torch at module level.
"""
