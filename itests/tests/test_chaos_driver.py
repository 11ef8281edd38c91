"""What the chaos driver finds to drop: the database sessions of the run's processes, and nobody else's."""

from __future__ import annotations

import socket
import subprocess
import sys

from itests.chaos.driver import _database_ports

CONNECT = """
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print(s.getsockname()[1], flush=True)
time.sleep(30)
"""


def test_the_sessions_of_a_process_and_its_children_are_found_by_their_ports_and_only_theirs():
    with socket.socket() as server, socket.socket() as other:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        other.connect(("127.0.0.1", port))  # a session of this process, which is not one of the run's
        # A parent whose child holds the session, as a Celery worker's pool does.
        parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys; "
                                   f"subprocess.run([sys.executable, '-c', {CONNECT!r}, sys.argv[1]])", str(port)],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert parent.stdout is not None
            child_port = int(parent.stdout.readline())
            assert _database_ports([parent], port) == {child_port}
            assert _database_ports([parent], port + 1 if port < 65535 else port - 1) == set()  # another server
        finally:
            parent.kill()
            parent.wait(timeout=10)
        assert _database_ports([parent], port) == set()  # a process that ended holds nothing
