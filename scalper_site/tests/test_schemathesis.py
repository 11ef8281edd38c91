"""The whole API, fuzzed from its own OpenAPI schema: no server error, no answer the schema does not document.

A real uvicorn serves the ASGI application on loopback against this test's
PostgreSQL database and the machine's Redis. The schema it serves at
``/api/schema/`` goes to schemathesis's command line, which sends, with a staff
user's API token, a bounded, derandomized set of requests per operation: the
coverage phase's boundary and wrong-type values and a few generated ones, valid
and invalid. Every response must pass all of schemathesis's checks: no 5xx, the
status code, content type and body documented for the operation, invalid input
refused, valid input accepted, a 405 for a method the path lacks, auth enforced.

No trader runs, so the actions that need it answer their documented refusal
(panic close: 503; a retry without a failed plan: 409). Integration runs are
queued on a queue of their own that no worker reads, deleted afterwards.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from knox.models import AuthToken

from scalper_site.testkit import env_on_test_database, free_port, start_process, stop_process, wait_until

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

EXAMPLES_PER_OPERATION = 5
RUN_TIMEOUT_S = 300  # the run takes well under a minute; this only stops a hung one
# The one 5xx the API documents: panic close with no trader to send it to. status_code_conformance
# still fails it on any operation that does not document it.
ACCEPTED_STATUSES = ["2xx", "3xx", "4xx", "503"]
# ``?wait`` holds the request until a run finishes, and none finishes here (no worker reads the queue).
WAIT_S = 0.1


@pytest.fixture
def api_token() -> str:
    """An operator's API token (knox), as ``manage.py issue_token`` issues one: staff, and allowed the dangerous
    actions (``failover.operate_trader``), so every operation is reached past its permission check."""
    user = get_user_model().objects.create_user(f"fuzz-{uuid.uuid4().hex[:6]}", password=uuid.uuid4().hex,
                                                is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="operate_trader", content_type__app_label="failover"))
    _, key = AuthToken.objects.create(user=user)
    return key


@pytest.fixture
def web(tmp_path: Path) -> Iterator[str]:
    """uvicorn serving the product on this test's database; integration chains go to a queue nobody reads."""
    queue = f"fuzz-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = env_on_test_database(
        connection, REDIS_URL=settings.REDIS_URL, CELERY_QUEUE=queue, DJANGO_SETTINGS_MODULE="scalper_site.settings",
        # Throttling has its own test (test_api); here every action request should reach its view.
        API_ACTION_RATE="100000/min",
    )
    argv = [sys.executable, "-m", "uvicorn", "scalper_site.asgi:application", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning"]
    process = start_process(argv, env=env, log=tmp_path / "web.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(f"{url}/api/ping", timeout=2).status_code in (401, 403), timeout=60,
                   what=f"uvicorn up (log {tmp_path / 'web.log'})")
        yield url
    finally:
        stop_process(process)
        client = redis.Redis.from_url(settings.REDIS_URL)
        for key in client.scan_iter(match=f"*{queue}*"):  # the queue's list and kombu's bindings of it
            client.delete(key)


def _config(path: Path, token: str) -> Path:
    """schemathesis.toml: deterministic, a few examples per operation, server errors defined as above."""
    statuses = ", ".join(f'"{status}"' for status in ACCEPTED_STATUSES)
    path.write_text(f"""\
workers = 1
request-timeout = 30

[cache]
enabled = false  # no crash files left behind: a failure is reported in the output

# The schema's own security scheme: schemathesis knows the credential, and checks requests without it are refused.
[auth.openapi.tokenAuth]
api_key = "Token {token}"

[generation]
# Derandomized: the same requests on every run (a seed would be ignored).
mode = "all"
max-examples = {EXAMPLES_PER_OPERATION}
deterministic = true
database = "none"

[parameters]
"query.wait" = {WAIT_S}

[checks.not_a_server_error]
expected-statuses = [{statuses}]
""")
    path.chmod(0o600)  # it holds a token
    return path


def test_the_api_answers_only_what_its_schema_documents(web, api_token, tmp_path):
    config = _config(tmp_path / "schemathesis.toml", api_token)
    # The schema itself needs the token too: fetched here, as the API serves it, and handed over as a file.
    served = requests.get(f"{web}/api/schema/", params={"format": "json"}, timeout=30,
                          headers={"Authorization": f"Token {api_token}"})
    assert served.status_code == 200, served.text[:2000]
    schema = tmp_path / "openapi.json"
    schema.write_bytes(served.content)
    argv = [str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(config), "run", str(schema),
            "--url", web, "--checks", "all", "--report", "junit", "--report-dir", str(tmp_path / "report")]
    result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                            env={"PATH": str(Path(sys.executable).parent), "NO_COLOR": "1", "HOME": str(tmp_path)})
    assert result.returncode == 0, f"schemathesis found problems:\n{result.stdout[-20000:]}\n{result.stderr[-3000:]}"
    print(result.stdout[-1500:])  # the summary: phases, operations tested, cases generated


def test_the_reported_server_errors_are_refusals_on_postgresql_and_uvicorn(web, api_token):
    """The two inputs that were 5xx on this stack: an offset beyond a 64-bit OFFSET, a body nested 50,000 deep."""
    auth = {"Authorization": f"Token {api_token}"}
    huge_offset = requests.get(f"{web}/api/tests/integration/runs", params={"offset": 10**30}, headers=auth, timeout=30)
    assert huge_offset.status_code == 400 and huge_offset.json()["errors"].keys() == {"offset"}
    for depth in (50_000, 30_000):  # over the size bound, and within it but too deep
        deep = requests.post(f"{web}/api/failover/exit-safe-mode", data="[" * depth + "]" * depth, timeout=30,
                             headers={**auth, "Content-Type": "application/json"})
        assert deep.status_code == 400 and deep.json()["detail"], deep.text[:500]
    assert requests.get(f"{web}/api/failover/status", headers=auth, timeout=30).json()["safeMode"] is True
