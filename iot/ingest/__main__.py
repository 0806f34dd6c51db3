"""``python -m iot.ingest``: run the ingester with settings from the environment.

``flask iot ingest`` calls ``run_from_settings`` with the app's settings.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from core import clock
from core.config import Settings
from iot.ingest import log as ingest_log
from iot.ingest.config import ClientIdInUse, IngestConfig, claim_client_id
from iot.ingest.mqtt import Ingester
from iot.ingest.stats import Stats


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m iot.ingest", description="Store greenhouse MQTT data.")
    p.add_argument(
        "--shared-group", help="subscribe as $share/NAME/... to split the stream with other ingesters"
    )
    p.add_argument(
        "--client-id",
        help="MQTT client id (default MQTT_CLIENT_ID; in a shared group <id>-<group>-<host>-<n>, "
        "n the lowest free)",
    )
    p.add_argument(
        "--take-over",
        metavar="CLIENT_ID",
        help="store what a stopped ingester's session holds, then end that session (and exit)",
    )
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
    take_over: str | None = None,
) -> Stats:
    """What ``python -m iot.ingest`` and ``flask iot ingest`` both run (until SIGTERM/SIGINT,
    or with ``take_over`` until that session is emptied and ended)."""
    clock.configure(settings.timezone)
    # the lock is held until this process ends: no second ingester on this host takes the id
    client_id, _lock = claim_client_id(
        Path(settings.instance_path) / "run",
        client_id=take_over or client_id,
        shared_group=shared_group,
        base=settings.mqtt_client_id,
    )
    config = IngestConfig.from_settings(
        settings,
        shared_group=shared_group,
        client_id=client_id,
        take_over=bool(take_over),
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
    try:
        run_from_settings(
            Settings.from_env(),
            shared_group=args.shared_group,
            client_id=args.client_id,
            batch_size=args.batch_size,
            batch_ms=args.batch_ms,
            metrics_port=args.metrics_port,
            take_over=args.take_over,
        )
    except ClientIdInUse as exc:
        print(f"python -m iot.ingest: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
