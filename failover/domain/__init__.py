"""The failover and recovery engine's pure core: no Django, no I/O beyond ``process_state.json``.

Modules: ``enums`` and ``types`` (the spec's vocabulary and JSON shapes),
``process_state`` (the black box and the start verdict), ``plans`` and
``steps`` (failure -> steps, merging, legal transitions), ``reconcile``
(position and order diffs), ``detectors`` (observations -> failure events),
``health`` (spec section 10). See README.md in this folder.
"""
