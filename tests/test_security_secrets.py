"""No secret value ever reaches a log line: env-named secrets and resolved ``Secret`` references are redacted."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from yujing import log as ylog
from yujing.config.secrets import Secret


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """The daemon's own log setup (yujing.log.setup), writing into a buffer instead of stderr."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, sys.excepthook
    buf = io.StringIO()
    ylog.setup("DEBUG")
    root.handlers[0].setStream(buf)  # type: ignore[attr-defined]
    yield buf
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    sys.excepthook = saved[2]


@pytest.mark.parametrize("var", ["TWILIO_AUTH_TOKEN", "MQTT_PASSWORD_GW_ZZ_01", "INFLUX_TOKEN", "YUJING_WEBHOOK_SECRET"])
def test_env_var_named_like_a_secret_is_redacted_from_messages(var, log_output, monkeypatch):
    value = "s3cr3t-" + var.lower()
    monkeypatch.setenv(var, value)
    logging.getLogger("yujing.test").warning("connecting with %s to broker", value)
    out = log_output.getvalue()
    assert value not in out
    assert "connecting with [REDACTED] to broker" in out


def test_ordinary_env_values_are_left_alone(log_output, monkeypatch):
    monkeypatch.setenv("YUJING_GATEWAY", "gw-zhongzhou-01")
    logging.getLogger("yujing.test").info("gateway %s", "gw-zhongzhou-01")
    assert "gateway gw-zhongzhou-01" in log_output.getvalue()


def test_secret_read_from_a_file_is_redacted_once_resolved(log_output, tmp_path: Path):
    f = tmp_path / "twilio.token"
    f.write_text("file-held-token-9f8e7d\n")
    value = Secret(file=f).get()
    logging.getLogger("yujing.alerts").info("twilio client", extra={"kv": {"auth": value, "n": 3}})
    out = log_output.getvalue()
    assert value not in out
    assert "auth=[REDACTED]" in out and "n=3" in out


def test_secret_inside_an_exception_traceback_is_redacted(log_output, monkeypatch):
    monkeypatch.setenv("INFLUX_TOKEN", "tok-0123456789abcdef")
    try:
        raise ConnectionError("POST http://db:8086/write?token=tok-0123456789abcdef refused")
    except ConnectionError:
        logging.getLogger("yujing.collector").exception("store down")
    out = log_output.getvalue()
    assert "tok-0123456789abcdef" not in out
    assert "token=[REDACTED] refused" in out


def test_json_log_lines_are_redacted_too(monkeypatch):
    monkeypatch.setenv("MQTT_PASSWORD", "json-mode-password")
    root = logging.getLogger()
    saved = root.handlers[:], root.level, sys.excepthook
    buf = io.StringIO()
    try:
        ylog.setup("INFO", as_json=True)
        root.handlers[0].setStream(buf)  # type: ignore[attr-defined]
        logging.getLogger("yujing.edge").info("uplink", extra={"kv": {"password": "json-mode-password"}})
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        sys.excepthook = saved[2]
    doc = json.loads(buf.getvalue().strip())
    assert doc["password"] == "[REDACTED]"
    assert "json-mode-password" not in buf.getvalue()


def test_secret_repr_never_shows_the_value(monkeypatch):
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "repr-check-token")
    s = Secret(env="TWILIO_AUTH_TOKEN")
    assert s.get() == "repr-check-token"
    assert "repr-check-token" not in repr(s) and "repr-check-token" not in str(s)


def test_a_crash_traceback_is_redacted_too(tmp_path):
    """An exception that escapes the daemon is printed by Python, not by logging: setup() covers it as well."""
    import subprocess

    from conftest import ROOT

    code = ("from yujing import log; log.setup(); import os\n"
            "raise RuntimeError('refused: ' + os.environ['TWILIO_AUTH_TOKEN'])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd=tmp_path,
                       env={"TWILIO_AUTH_TOKEN": "crash-token-5e6f7a8b", "PYTHONPATH": str(ROOT), "PATH": "/usr/bin"})
    assert r.returncode == 1
    assert "RuntimeError: refused: [REDACTED]" in r.stderr
    assert "crash-token-5e6f7a8b" not in r.stderr


def test_short_flag_values_of_secret_named_vars_do_not_blank_out_words(log_output, monkeypatch):
    monkeypatch.setenv("TWILIO_TOKEN_CHECK", "true")  # a flag, not a secret
    logging.getLogger("yujing.test").info("retry is true")
    assert "retry is true" in log_output.getvalue()
