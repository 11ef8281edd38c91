"""The product's own Bybit V5 exchange simulator (REST + WebSocket on loopback).

Start it with ``python manage.py run_simexchange``; point pybit at it with
``trading.simexchange.pybit_target``; steer it with ``trading.simexchange.control``.
The account, its fill rules and the market feed (``account``, ``orders``,
``matching``, ``book``, ``market``) are plain Python so that the in-process
REPLAY venue can reuse them. See README.md for the module table.
"""
