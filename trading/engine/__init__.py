"""The Django-free trading engine: what runs on the trader's pipeline thread (see README.md)."""
