"""Chaos runs: a seeded driver of kills, faults and behind-the-back changes, a recorded history, and the
invariants checked over the exchange's record (see ``itests/README.md``, "Chaos runs")."""
