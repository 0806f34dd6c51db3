"""The ingester's counters, and the small HTTP server that shows them:
``/metrics`` (Prometheus text, by ``prometheus_client``), ``/status`` (JSON) and
``/health`` (200, or 503 with a JSON reason when the ingester is stalled).

The counters are plain integers on the hot path (a message costs ``received += 1``);
Prometheus reads them only when it scrapes, through a custom collector. Gauges of what is
waiting (unacknowledged messages, the oldest one's age) are read from the ingester at
scrape time through ``Stats.waiting``.

Readings dropped on purpose (not redeliveries: those are ``duplicates``) are counted by
reason in a ``Drops`` counter: code that decides to drop a reading calls
``drops.add("reason", n)`` on the ``Drops`` of its batch (``DecodedBatch.dropped``,
``BatchResult.dropped``); the ingester adds each batch's to ``Stats.dropped``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)

from iot.ingest.log import kv

# what generate_latest() writes, in every prometheus_client release we allow
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"

log = logging.getLogger("iot.ingest")
PREFIX = "tianyuan_ingest_"


class Drops(Counter[str]):
    """Readings dropped on purpose, by reason (e.g. ``unknown_sensor``); never redeliveries."""

    def add(self, reason: str, n: int = 1) -> None:
        if n:
            self[reason] += n


def nothing_waiting() -> tuple[int, float | None]:
    return 0, None


@dataclass
class Stats:
    received: int = 0
    stored: int = 0  # readings inserted
    duplicates: int = 0  # readings already present (redeliveries)
    irrigation: int = 0  # irrigation messages stored
    status: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    batch_seconds: float = 0.0
    batch_seconds_max: float = 0.0
    buffered_max: int = 0  # most messages the reader held at once, not yet with the writer
    buffered_bytes_max: int = 0  # ... and most payload bytes
    db_errors: int = 0
    alert_errors: int = 0
    connects: int = 0
    disconnects: int = 0
    acked: int = 0
    subscribed: int = 0
    writer_starts: int = 0
    connect_refused: int = 0  # CONNACKs with a failure (bad credentials, not authorised, ...)
    dropped: Drops = field(default_factory=Drops)
    started_at: float = field(default_factory=time.time)  # epoch seconds
    last_commit_at: float | None = None  # epoch seconds of the last committed batch
    # (messages received and not yet acknowledged, arrival of the oldest), set by the ingester
    waiting: Callable[[], tuple[int, float | None]] = nothing_waiting
    health_stall_s: float = 60.0
    # since when the ingester has not been subscribed (epoch seconds; None while it is):
    # a refused login or a broker gone leaves nothing waiting here, and is a stall too
    unsubscribed_since: float | None = field(default_factory=time.time)

    def committed(self, now: float | None = None) -> None:
        """A batch was committed (called by the ingester after each one)."""
        self.last_commit_at = time.time() if now is None else now

    def health(self, now: float | None = None) -> tuple[bool, dict[str, Any]]:
        """(healthy, the JSON for ``/health``). Unhealthy: messages are waiting, the oldest for
        more than ``health_stall_s``, and nothing was committed in that time; or the ingester
        has not been subscribed to the broker for longer than that (login refused, broker
        gone: nothing reaches it to wait). Idle and subscribed is healthy."""
        now = time.time() if now is None else now
        unacked, oldest = self.waiting()
        oldest_age = 0.0 if oldest is None or not unacked else max(0.0, now - oldest)
        since_commit = now - (self.last_commit_at if self.last_commit_at is not None else self.started_at)
        body: dict[str, Any] = {
            "status": "ok",
            "unacked": unacked,
            "oldest_unacked_age_s": round(oldest_age, 3),
            "seconds_since_commit": round(since_commit, 3),
            "stall_after_s": self.health_stall_s,
            "subscribed": self.subscribed,
        }
        stalled = unacked > 0 and oldest_age > self.health_stall_s and since_commit > self.health_stall_s
        cut_off = self.unsubscribed_since is not None and now - self.unsubscribed_since > self.health_stall_s
        if stalled:
            body["status"] = "stalled"
            body["reason"] = (
                f"no commit for {since_commit:.0f} s while {unacked} messages wait "
                f"(the oldest for {oldest_age:.0f} s)"
            )
        elif cut_off:
            assert self.unsubscribed_since is not None
            body["status"] = "disconnected"
            body["reason"] = (
                f"not subscribed to the broker for {now - self.unsubscribed_since:.0f} s "
                f"({self.connect_refused} connections refused)"
            )
        return not (stalled or cut_off), body

    # the broker side (iot.ingest.mqtt): acknowledged and not stored on purpose
    retained_ignored: int = 0  # retained copies (the live message came before)
    topics_ignored: int = 0  # alert events, Tasmota housekeeping (IngestConfig.ignores)
    alert_publish_errors: int = 0  # alert events the broker refused or that could not be sent

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "acked": self.acked,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "irrigation": self.irrigation,
            "status": self.status,
            "quarantined": dict(self.quarantined),
            "batches": self.batches,
            "db_errors": self.db_errors,
            "subscribed": self.subscribed,
            "dropped": dict(self.dropped),
            "connect_refused": self.connect_refused,
            "unacked": self.waiting()[0],
            "retained_ignored": self.retained_ignored,
            "topics_ignored": self.topics_ignored,
            "alert_publish_errors": self.alert_publish_errors,
        }

    def log_fields(self) -> dict[str, Any]:
        """``as_dict`` for a log line: counts by reason summed."""
        fields = self.as_dict()
        fields["quarantined"] = sum(self.quarantined.values())
        fields["dropped"] = sum(self.dropped.values())
        return fields

    def prometheus(self) -> bytes:
        """The counters in Prometheus' text format."""
        registry = CollectorRegistry()
        registry.register(StatsCollector(self))
        return generate_latest(registry)


class StatsCollector:
    """A ``prometheus_client`` collector reading a ``Stats`` at scrape time."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self.stats

        def counter(name: str, help_: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(PREFIX + name, help_, value=value)

        yield counter("messages_received_total", "MQTT messages received.", s.received)
        yield counter("messages_acked_total", "MQTT messages acknowledged after commit.", s.acked)
        yield counter("readings_stored_total", "Readings inserted.", s.stored)
        yield counter("readings_duplicate_total", "Readings already stored (redeliveries).", s.duplicates)
        yield counter("irrigation_messages_total", "Irrigation messages stored.", s.irrigation)
        yield counter("status_messages_total", "Device status messages.", s.status)
        quarantined = CounterMetricFamily(
            PREFIX + "quarantined_total", "Messages quarantined, by reason.", labels=["reason"]
        )
        for reason, n in sorted(s.quarantined.items()) or [("none", 0)]:
            quarantined.add_metric([reason], n)
        yield quarantined
        yield counter("batches_total", "Batches committed.", s.batches)
        yield SummaryMetricFamily(
            PREFIX + "batch_seconds",
            "Time spent storing batches.",
            count_value=s.batches,
            sum_value=round(s.batch_seconds, 6),
        )
        yield GaugeMetricFamily(
            PREFIX + "batch_seconds_max", "Longest batch so far.", value=round(s.batch_seconds_max, 6)
        )
        yield GaugeMetricFamily(
            PREFIX + "buffered_max",
            "Most messages received at once and not yet handed to the writer (Receive Maximum bounds it).",
            value=s.buffered_max,
        )
        yield GaugeMetricFamily(
            PREFIX + "buffered_bytes_max",
            "Most payload bytes received at once and not yet handed to the writer.",
            value=s.buffered_bytes_max,
        )
        yield counter("db_errors_total", "Failed batch transactions (retried).", s.db_errors)
        yield counter("alert_errors_total", "Alert evaluations that failed (readings kept).", s.alert_errors)
        yield counter("connects_total", "Connections to the broker.", s.connects)
        yield counter("disconnects_total", "Connections to the broker lost.", s.disconnects)
        yield counter(
            "connections_refused_total",
            "Connections the broker refused (credentials, ACL).",
            s.connect_refused,
        )
        yield counter(
            "retained_ignored_total", "Retained copies acknowledged and not stored.", s.retained_ignored
        )
        yield counter(
            "topics_ignored_total",
            "Alert events and Tasmota housekeeping received, not stored.",
            s.topics_ignored,
        )
        yield counter(
            "alert_publish_errors_total",
            "Alert events refused by the broker or not sent.",
            s.alert_publish_errors,
        )
        yield counter(
            "writer_starts_total", "Writer processes started (more than 1: restarts).", s.writer_starts
        )
        dropped = CounterMetricFamily(
            PREFIX + "readings_dropped_total",
            "Readings dropped on purpose, by reason (not redeliveries: see readings_duplicate_total).",
            labels=["reason"],
        )
        for reason, n in sorted(s.dropped.items()) or [("none", 0)]:
            dropped.add_metric([reason], n)
        yield dropped
        now = time.time()
        unacked, oldest = s.waiting()
        yield GaugeMetricFamily(
            PREFIX + "messages_unacked",
            "Messages received and not yet acknowledged (waiting for their batch's commit).",
            value=unacked,
        )
        yield GaugeMetricFamily(
            PREFIX + "oldest_unacked_age_seconds",
            "Age of the oldest unacknowledged message (0: none waiting).",
            value=round(max(0.0, now - oldest), 3) if unacked and oldest is not None else 0.0,
        )
        yield GaugeMetricFamily(
            PREFIX + "last_commit_age_seconds",
            "Seconds since the last committed batch (since the start if none yet).",
            value=round(now - (s.last_commit_at if s.last_commit_at is not None else s.started_at), 3),
        )


class MetricsServer:
    """``/metrics``, ``/status`` and ``/health`` for a ``Stats`` on ``host:port`` (port 0: any
    free port), served by a daemon thread."""

    def __init__(self, stats: Stats, host: str = "127.0.0.1", port: int = 0) -> None:
        registry = CollectorRegistry()
        registry.register(StatsCollector(stats))

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                code = 200
                if self.path.startswith("/metrics"):
                    body, ctype = generate_latest(registry), TEXT_FORMAT
                elif self.path.startswith("/status"):
                    body, ctype = json.dumps(stats.as_dict()).encode(), "application/json"
                elif self.path.startswith("/health"):
                    healthy, report = stats.health()
                    code = 200 if healthy else 503
                    body, ctype = json.dumps(report).encode(), "application/json"
                else:
                    self.send_error(404)
                    return
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
                pass

        self._http = ThreadingHTTPServer((host, port), Handler)
        self.host = host
        self.port: int = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, name="metrics", daemon=True).start()
        log.info(kv("metrics", url=f"http://{host}:{self.port}/metrics"))

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
