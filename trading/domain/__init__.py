"""Pure-Python trading domain: features, regime, scoring, state machine, risk.

Nothing in this package imports Django, pybit or the network, so the hot loop
and its tests run without the ORM. Clock and config come in through
constructors. See README.md in this folder for the pipeline and reason codes.
"""
