from __future__ import annotations

import sys
import threading
import time

import pytest

from scalper_site.launcher import ProcessSpec, Supervisor
from scalper_site.testkit import BASE_DIR, wait_until

pytestmark = pytest.mark.slow  # each test starts child processes


def _supervisor(specs, lines, **kw) -> Supervisor:
    return Supervisor(specs, base_env={"PATH": "/usr/bin:/bin"}, cwd=BASE_DIR, out=lines.append, **kw)


def test_dead_child_is_reported_and_restarted(tmp_path):
    marker = tmp_path / "starts"
    script = (
        f"import pathlib,sys; p=pathlib.Path({str(marker)!r}); "
        "p.write_text(p.read_text()+'x' if p.exists() else 'x'); sys.exit(3)"
    )
    lines: list[str] = []
    sup = _supervisor([ProcessSpec("flaky", [sys.executable, "-c", script])], lines, max_restarts=1)
    code = sup.run()
    assert code == 1
    assert marker.read_text() == "xx"
    died = [line for line in lines if "PROCESS DIED: flaky" in line]
    assert len(died) == 2 and all("exited with code 3" in line for line in died)
    assert any("restarting flaky" in line for line in lines)
    assert any("stopping the product" in line for line in lines)


def test_stop_kills_a_child_that_ignores_sigterm():
    script = (
        "import signal,time,sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    lines: list[str] = []
    sup = _supervisor([ProcessSpec("stubborn", [sys.executable, "-c", script])], lines, stop_timeout_s=0.5)
    runner = threading.Thread(target=sup.run)
    runner.start()
    wait_until(lambda: "[stubborn] ready" in lines, timeout=10, what="child to start")
    started = time.monotonic()
    sup.request_stop()
    runner.join(timeout=10)
    assert not runner.is_alive()
    assert time.monotonic() - started < 9
    assert any("ignored SIGTERM; killing it" in line for line in lines)
    assert sup.exit_code == 0
    assert all(c.process is None or c.process.poll() is not None for c in sup.children)


def test_child_output_is_prefixed_with_its_name():
    lines: list[str] = []
    sup = _supervisor(
        [ProcessSpec("talker", [sys.executable, "-c", "print('hello'); import time; time.sleep(30)"])], lines
    )
    runner = threading.Thread(target=sup.run)
    runner.start()
    try:
        wait_until(lambda: "[talker] hello" in lines, timeout=10, what="prefixed output")
    finally:
        sup.request_stop()
        runner.join(timeout=20)
