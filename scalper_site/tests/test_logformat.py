from __future__ import annotations

import json
import logging

from scalper_site.logformat import JsonFormatter


def test_json_log_lines_carry_the_message_and_extra_fields():
    record = logging.LogRecord("scalper.trader", logging.WARNING, __file__, 1, "failure %s", ("PACKET_LOSS",), None)
    record.runId = "run-1"
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "WARNING" and line["logger"] == "scalper.trader"
    assert line["message"] == "failure PACKET_LOSS" and line["runId"] == "run-1"
    assert line["ts"].endswith("Z")


def test_exceptions_are_kept_in_the_line():
    try:
        raise ValueError("bad frame")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "oops", (), sys.exc_info())
    line = json.loads(JsonFormatter().format(record))
    assert "ValueError: bad frame" in line["exception"]
