"""The notification log's file: its commits never checkpoint (the fsyncs that takes would stall the event loop);
the checkpointer does, on its own connection and thread, and nothing committed is lost either way."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

from testing.alerts import warning

from alerts.nflog import Channel, NodeTier, Notification, NotificationLog

AT = datetime(2026, 7, 14, 3, 0, tzinfo=UTC)


def _notifications(n: int) -> list[Notification]:
    w = warning()
    return [Notification(key=Notification.make_key(w.id, f"+86139{i:08d}", Channel.SMS, 1), warning_id=w.id,
                         warning_key=w.key, phone=f"+86139{i:08d}", channel=Channel.SMS, attempt=1, priority=40,
                         body="滑坡红色预警：" + "请立即撤离至安全避险点，严禁返回！" * 8, ack=False,
                         node="shibao.gonghe.g1", tier=NodeTier.HOUSEHOLD, name=f"户{i}")
            for i in range(n)]


def _rows_in_main_file(path: Path, tmp: Path) -> int:
    """The notifications in the database file alone, without its WAL: what checkpoints have copied there."""
    copy = tmp / "main-only.sqlite"
    shutil.copyfile(path, copy)
    db = sqlite3.connect(copy)
    try:
        return db.execute("SELECT COUNT(*) FROM notifications").fetchone()[0]
    finally:
        db.close()


def test_commits_leave_the_checkpoint_to_the_checkpointer_thread(tmp_path: Path):
    path = tmp_path / "alerts.sqlite"
    with NotificationLog(path) as log:
        asyncio.run(log.checkpoint())  # the schema into the file
        for i in range(0, 6000, 250):  # a red's fan-out, in its chunks: well past SQLite's 1000-page trigger
            assert len(log.notifications.enqueue(_notifications(6000)[i:i + 250], AT)) == 250
        wal = path.with_name(path.name + "-wal")
        assert wal.stat().st_size > 1000 * 4096  # no commit checkpointed (it would have restarted the WAL)
        assert _rows_in_main_file(path, tmp_path) == 0
        asyncio.run(log.checkpoint())
        assert _rows_in_main_file(path, tmp_path) == 6000  # copied by the checkpointer ...
        assert any(t.name.startswith("nflog-checkpoint") for t in threading.enumerate())  # its own thread
        assert log.notifications.pending_count() == 6000  # ... and the log reads and writes on as before
        log.notifications.enqueue(_notifications(6001)[6000:], AT)
    assert not wal.exists()  # closing checkpoints the rest
    assert _rows_in_main_file(path, tmp_path) == 6001


def test_no_alerts_module_outside_the_log_speaks_sql():
    """The log's tables have one owner each, in alerts/nflog/: every other stage asks its parts."""
    root = Path(__file__).resolve().parent.parent / "alerts"
    outside = [p for p in root.rglob("*.py") if "nflog" not in p.relative_to(root).parts]
    assert outside, "no alerts modules found"
    speaking = sorted(str(p.relative_to(root)) for p in outside
                      if any(s in p.read_text() for s in (".execute(", ".executemany(", "sqlite3.connect(")))
    assert speaking == []
