"""The failover and recovery engine's pure core: no Django, no I/O beyond ``process_state.json``.

Modules: ``clock`` (the one Clock), ``enums`` and ``types`` (the spec's
vocabulary and JSON shapes; the values live in ``failure``, ``snapshots`` and
``recovery_plan``), ``process_state`` (the black box and the start verdict),
``plans`` and ``steps`` (failure -> steps, merging, legal transitions),
``reconcile`` (position and order diffs), ``detectors`` (observations ->
failure events), ``health`` (spec section 10). See README.md in this folder.
"""
