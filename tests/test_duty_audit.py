"""The duty office's audit log on disk: append-only (an entry can be neither changed nor removed), every entry
fsynced before the answer goes back (WAL, synchronous FULL), and a file that cannot be opened named in one
error type, as every part's SQLite (yujing/sqlite.py)."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

import pytest

from duty.audit import AuditLog
from yujing.errors import StoreError


def test_the_audit_log_is_append_only_and_synced_in_full(tmp_path):
    log = AuditLog(tmp_path / "audit.sqlite")
    try:
        log.record(datetime.now(timezone.utc), user="li", role="operator", remote="127.0.0.1",
                   action="POST /api/v1/warnings", target="rainstorm:@shibao", result="ok", status=201)
        assert log.db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert log.db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            log.db.execute("UPDATE audit SET result = 'forbidden'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            log.db.execute("DELETE FROM audit")
        [entry] = log.entries()
        assert (entry.user, entry.result, entry.status) == ("li", "ok", 201)
    finally:
        log.close()


def test_an_audit_log_that_cannot_be_opened_says_which_file(tmp_path):
    (tmp_path / "not-a-dir").write_text("")
    with pytest.raises(StoreError, match="duty audit log .*not-a-dir"):
        AuditLog(tmp_path / "not-a-dir" / "audit.sqlite")
