from __future__ import annotations

import pytest
import redis

from scalper_site.embedded_redis import EmbeddedRedis, EmbeddedRedisError, read_url_file

pytestmark = pytest.mark.slow  # each test starts a real redis-server


def test_embedded_redis_starts_on_loopback_with_a_password_and_stops(tmp_path):
    server = EmbeddedRedis(tmp_path)
    url = server.start()
    try:
        assert url.startswith("redis://:") and "@127.0.0.1:" in url
        assert read_url_file(tmp_path) == url
        client = redis.Redis.from_url(url)
        assert client.ping()
        client.set("k", "v")
        assert client.get("k") == b"v"
        without_password = redis.Redis(host="127.0.0.1", port=int(url.rsplit(":", 1)[1].split("/")[0]))
        with pytest.raises(redis.AuthenticationError):
            without_password.get("k")
    finally:
        server.stop()
    assert read_url_file(tmp_path) == ""
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()


def test_second_embedded_redis_on_the_same_data_folder_is_refused(tmp_path):
    with EmbeddedRedis(tmp_path), pytest.raises(EmbeddedRedisError, match="already running"):
        EmbeddedRedis(tmp_path).start()


def test_stale_url_file_from_a_dead_server_is_replaced(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "redis.url").write_text("redis://:x@127.0.0.1:1/0\n")
    with EmbeddedRedis(tmp_path) as server:
        assert read_url_file(tmp_path) == server.url != "redis://:x@127.0.0.1:1/0"
