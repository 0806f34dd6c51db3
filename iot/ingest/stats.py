"""The ingester's counters, and the small HTTP server that shows them:
``/metrics`` (Prometheus text, by ``prometheus_client``) and ``/status`` (JSON).

The counters are plain integers on the hot path (a message costs ``received += 1``);
Prometheus reads them only when it scrapes, through a custom collector.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Iterator
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
    db_errors: int = 0
    alert_errors: int = 0
    connects: int = 0
    disconnects: int = 0
    acked: int = 0
    subscribed: int = 0
    writer_starts: int = 0
    connect_refused: int = 0  # CONNACKs with a failure (bad credentials, not authorised, ...)
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
            "connect_refused": self.connect_refused,
            "retained_ignored": self.retained_ignored,
            "topics_ignored": self.topics_ignored,
            "alert_publish_errors": self.alert_publish_errors,
        }

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


class MetricsServer:
    """``/metrics`` and ``/status`` for a ``Stats`` on ``host:port`` (port 0: any free port),
    served by a daemon thread."""

    def __init__(self, stats: Stats, host: str = "127.0.0.1", port: int = 0) -> None:
        registry = CollectorRegistry()
        registry.register(StatsCollector(stats))

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path.startswith("/metrics"):
                    body, ctype = generate_latest(registry), TEXT_FORMAT
                elif self.path.startswith("/status"):
                    body, ctype = json.dumps(stats.as_dict()).encode(), "application/json"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
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
