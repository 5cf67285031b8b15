"""Runs: the run lifecycle (start, wait, get, list, cancel) in `service`, a new run's launch
in `launch`, how long a request waits and a state machine's wait on a run in `waiting`, the
runs table in `store` (its lists in `listing`, a run as an item in `items`), the handing
over to the worker or Step Functions in `dispatch`, the worker and the child process a
script runs in (`worker`, `scripts`), how a run ends off the worker's own path (`endings`:
a crash, a retry's wait, a ttl), concurrency limits and their slots (`concurrency`), the
deadline sweeper (`sweeper`), what reacts to ended runs on the table's stream (`notify`),
and what starting a run involves besides: batches, Idempotency-Keys, list cursors, the
result cache and the compatible endpoint.
"""
