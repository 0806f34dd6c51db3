"""``python -m iot.ingest``: run the ingester with settings from the environment.

``flask iot ingest`` calls ``run_from_settings`` with the app's settings.
"""

from __future__ import annotations

import argparse
import signal
import socket
import threading
from types import FrameType

from core import clock
from core.config import Settings
from iot.ingest import log as ingest_log
from iot.ingest.config import IngestConfig
from iot.ingest.mqtt import Ingester
from iot.ingest.stats import Stats


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m iot.ingest", description="Store greenhouse MQTT data.")
    p.add_argument(
        "--shared-group", help="subscribe as $share/NAME/... to split the stream with other ingesters"
    )
    p.add_argument("--client-id", help="MQTT client id (fixed per instance; default MQTT_CLIENT_ID)")
    p.add_argument("--batch-size", type=int, default=5000)
    p.add_argument("--batch-ms", type=int, default=100)
    p.add_argument(
        "--metrics-port", type=int, help="serve Prometheus text on 127.0.0.1:PORT/metrics (0: any port)"
    )
    p.add_argument("--log-level", default="INFO")
    return p


def run_from_settings(
    settings: Settings,
    *,
    shared_group: str | None = None,
    client_id: str | None = None,
    batch_size: int | None = None,
    batch_ms: int | None = None,
    metrics_port: int | None = None,
) -> Stats:
    """What ``python -m iot.ingest`` and ``flask iot ingest`` both run (until SIGTERM/SIGINT)."""
    clock.configure(settings.timezone)
    if shared_group and not client_id and settings.mqtt_client_id == "tianyuan-ingester":
        # each member of a group needs its own (stable) id; the host name is stable per machine
        client_id = f"tianyuan-ingester-{shared_group}-{socket.gethostname()}"
    config = IngestConfig.from_settings(
        settings,
        shared_group=shared_group,
        client_id=client_id,
        batch_size=batch_size,
        batch_ms=batch_ms,
        metrics_port=metrics_port,
    )
    ingester = Ingester(config)

    def _term(_signum: int, _frame: FrameType | None) -> None:
        ingester.stop()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _term)
        signal.signal(signal.SIGINT, _term)
    return ingester.run()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ingest_log.setup(args.log_level)
    run_from_settings(
        Settings.from_env(),
        shared_group=args.shared_group,
        client_id=args.client_id,
        batch_size=args.batch_size,
        batch_ms=args.batch_ms,
        metrics_port=args.metrics_port,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
