"""Loaded by pytest before Django is configured (``-p`` in pytest.ini).

Gives each test session its own data folder, so no test reads or writes the
data of a running product; a developer may still set SCALPER_DATA_DIR.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

if "SCALPER_DATA_DIR" not in os.environ:
    os.environ["SCALPER_DATA_DIR"] = tempfile.mkdtemp(prefix="scalper-test-data-")
(Path(os.environ["SCALPER_DATA_DIR"]) / "static").mkdir(parents=True, exist_ok=True)
