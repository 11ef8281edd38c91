"""The Django side of recovery: plan rows <-> domain plans, step handlers, and the chain runner.

``records`` holds the shared core (locking the state row, committing a change
with its notifications, converting rows to domain values); ``kit`` is what
every step handler works with (its context, ``StepFailed``, the trader's
commands, the event log); ``handlers`` and ``resync`` carry out one step type
each; ``runner`` claims, runs and settles steps for the Celery tasks in
``failover.tasks``.
"""
