"""The collector's Prometheus metrics (default registry; served by yujing.metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter("yujing_collector_messages_total", "MQTT messages received")
READINGS_IN = Counter("yujing_collector_readings_in_total", "Readings accepted (valid, not duplicates)")
READINGS_OUT = Counter("yujing_collector_readings_out_total", "Readings written to the database", ["path"])
REJECTED = Counter("yujing_collector_rejected_total", "Messages rejected, by reason", ["reason"])
REFUSED = Counter("yujing_collector_refused_readings_total",
                  "Readings refused because their topic's gateway may not publish them (yujing.provenance)", ["reason"])
DUPLICATES = Counter("yujing_collector_duplicates_total", "Re-sent readings skipped (already stored or spooled)")
BATCH_SIZE = Histogram("yujing_collector_batch_readings", "Readings per database write",
                       buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000, 20000, 50000))
WRITE_SECONDS = Histogram("yujing_collector_write_seconds", "Database write latency",
                          buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
SPOOL_DEPTH = Gauge("yujing_collector_spool_readings", "Readings waiting in the on-disk spool")
SPOOLED = Counter("yujing_collector_spooled_total", "Readings spooled because the database was away")
SPOOL_DROPPED = Counter("yujing_collector_spool_dropped_total",
                        "Readings dropped from a full spool or a full disk (drop_oldest); also in the loss report")
SPOOL_UNWRITABLE = Counter("yujing_collector_spool_unwritable_total",
                           "Spool writes its file refused (disk full, I/O error); the batch stays unacknowledged")
SPOOL_WRITABLE = Gauge("yujing_collector_spool_writable", "0 while the spool's file refuses writes")
DB_UP = Gauge("yujing_collector_db_up", "1 when the last database write succeeded")
CONNECTED = Gauge("yujing_collector_mqtt_subscribed", "1 while subscribed to the readings topics", ["client_id"])
SESSION_LOST = Counter("yujing_collector_mqtt_session_lost_total",
                       "Reconnects on which the broker had forgotten our session (messages queued for us are gone)")
