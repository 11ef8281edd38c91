"""The wire in front of the simulator: it forwards requests intact and names the process that sent each one."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading

import pytest
import requests

from itests.hosts import NETNS, TwoHosts, Wire, socket_owner


class _Echo(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def test_wire_forwards_keep_alive_requests_and_names_this_process_as_their_sender(echo):
    wire = Wire(echo.server_address, http=True, candidates=lambda: {os.getpid(): "me"})
    try:
        with requests.Session() as session:
            answers = [session.post(f"{wire.url}/v5/order/create", data=f"body-{i}" * 50, timeout=5).text
                       for i in range(3)]
        assert answers == [f"body-{i}" * 50 for i in range(3)]
        seen = wire.seen()
        assert [(r.method, r.path, r.owner) for r in seen] == [("POST", "/v5/order/create", "me")] * 3
        assert seen[0].peer.startswith("127.0.0.1:")
    finally:
        wire.close()


def test_wire_names_a_child_process_and_not_a_candidate_that_holds_no_such_socket(echo):
    children: list[subprocess.Popen] = []
    wire = Wire(echo.server_address, http=True,
                candidates=lambda: {os.getpid(): "harness", **{p.pid: "child" for p in children}})
    code = f"import requests; print(requests.post('{wire.url}/v5/order/cancel', data='x', timeout=5).text)"
    try:
        children.append(subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True))
        out, _ = children[0].communicate(timeout=30)
        assert out.strip() == "x"
        assert [(r.path, r.owner) for r in wire.seen()] == [("/v5/order/cancel", "child")]
        assert socket_owner({os.getpid(): "harness"}, 1, wire.port) == "?"
    finally:
        wire.close()


def test_two_hosts_either_make_namespaces_that_reach_the_gateway_or_say_why_not(echo):
    hosts = TwoHosts(run_id="run-test-hosts").open()
    try:
        if hosts.mode != NETNS:
            assert hosts.why and hosts.prefix("a") == () and hosts.gateway == "127.0.0.1"
            return
        assert hosts.addresses["a"] != hosts.addresses["b"]
        wire = Wire(echo.server_address, host=hosts.gateway, http=True)
        try:
            code = f"import requests; print(requests.post('{wire.url}/x', data='hi', timeout=5).text)"
            out = subprocess.run([*hosts.prefix("b"), sys.executable, "-c", code], capture_output=True,
                                 text=True, timeout=30)
            assert out.stdout.strip() == "hi", out.stderr
            assert [r.peer.split(":")[0] for r in wire.seen()] == [hosts.addresses["b"]]
        finally:
            wire.close()
    finally:
        hosts.close()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert hosts.namespaces["a"] not in listed and hosts.namespaces["b"] not in listed
