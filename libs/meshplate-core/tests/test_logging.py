from __future__ import annotations

import json
import logging
import sys

import pytest

from meshplate_core.logging import JsonFormatter, configure_logging, request_id


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("demo", logging.INFO, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def test_line_is_json_with_the_request_id_of_the_context() -> None:
    token = request_id.set("req-7")
    try:
        line = json.loads(JsonFormatter("users").format(_record("user %s created", 42)))
    finally:
        request_id.reset(token)

    assert line["msg"] == "user 42 created"
    assert line["request_id"] == "req-7"
    assert (line["service"], line["level"], line["logger"]) == ("users", "info", "demo")


def test_extras_are_lifted_into_the_line() -> None:
    line = json.loads(JsonFormatter("users").format(_record("done", user_id=5)))

    assert line["user_id"] == 5
    assert "request_id" not in line


def test_exception_is_one_field_of_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("demo", logging.ERROR, __file__, 1, "failed", (), None)
        record.exc_info = sys.exc_info()

    text = JsonFormatter("users").format(record)

    assert "\n" not in text
    assert "ValueError: boom" in json.loads(text)["exc"]


def test_configure_logging_sends_everything_to_one_handler(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging(service="demo", level="INFO")
        logging.getLogger("uvicorn.error").info("hello %s", "world")
        out = capsys.readouterr().out
    finally:
        root.handlers[:], root.level = saved[0], saved[1]

    assert json.loads(out.strip())["msg"] == "hello world"
