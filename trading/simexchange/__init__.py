"""The product's own Bybit V5 exchange simulator (REST + WebSocket on loopback).

Start it with ``python manage.py run_simexchange``; point pybit at it with
``trading.simexchange.pybit_target``; steer it with ``trading.simexchange.control``.
The fill rules in ``matching`` and ``book`` are plain Python so that the
in-process REPLAY venue can reuse them.
"""
