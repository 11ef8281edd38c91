"""Test harness shared by every app.

Each test session gets its own data folder, so tests never touch the data of a
running product. The ``services`` group is selected with ``-m services`` and
runs with the production settings module.
"""

from __future__ import annotations

import os
import tempfile

_session_data = tempfile.mkdtemp(prefix="scalper-test-data-")
os.environ.setdefault("SCALPER_DATA_DIR", _session_data)
