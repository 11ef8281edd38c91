"""The folder of prometheus-client's multiprocess files: owner only, cleared of processes that are gone.

Each process that records a metric writes its own file there (``histogram_<pid>.db``);
the web server adds up every file at each scrape. The library reads
``PROMETHEUS_MULTIPROC_DIR`` once, when it is first imported, so settings set the
variable and call ``metrics_folder_prepare`` before anything imports it: this
module imports neither prometheus_client nor Django.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from failover.domain import files as private_files

MAX_PID_DIGITS = 10  # a longer run of digits in a file name is no pid of this machine


def _pid_of(name: str) -> int | None:
    """The pid in a name the library writes (``counter_12.db``, ``gauge_livesum_12.db``), or None."""
    stem, _, extension = name.rpartition(".")
    tail = stem.rpartition("_")[2]
    if extension != "db" or not (tail.isascii() and tail.isdigit()) or len(tail) > MAX_PID_DIGITS:
        return None
    return int(tail)


def process_alive(pid: int) -> bool:
    """Whether a process with ``pid`` runs on this machine (another user's counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, OSError):  # OverflowError: beyond the C int range, so no process has it
        return False
    return True


def metrics_folder_prepare(folder: Path) -> list[str]:
    """Create ``folder`` (0700) and remove the files of processes no longer running; return their names.

    A dead process's counts leave the sums with its file: Prometheus reads the drop
    as a counter reset, which ``rate()`` and ``increase()`` handle. Without this the
    folder would grow by a file for every process the product ever started.
    """
    private_files.secure_folder(folder)
    removed = []
    with os.scandir(folder) as entries:
        for entry in entries:
            pid = _pid_of(entry.name)
            if pid is None or pid == os.getpid() or process_alive(pid) or not entry.is_file(follow_symlinks=False):
                continue
            with contextlib.suppress(FileNotFoundError):  # another process starting now was quicker
                os.unlink(entry.path)
            removed.append(entry.name)
    return sorted(removed)
