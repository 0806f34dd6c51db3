"""Ingest benchmark: how close does the ingester come to what paho alone can drain?

Publishes N QoS 1 messages (native JSON, two readings each, spread over 100 greenhouses
and 300 devices) to a private Mosquitto while three persistent sessions are subscribed
and offline, so the broker queues them for each. Then it drains:

  (a) raw: a minimal paho subscriber that only counts (QoS 1, automatic acks);
  (b) the ingester into SQLite (WAL), committed rows counted;
  (c) the ingester into PostgreSQL, when --pg-url or TEST_DATABASE_URL is given.

Prints the rates and their ratio; the last line is name=value pairs.

    .venv/bin/python bench/ingest.py            # 200,000 messages
    .venv/bin/python bench/ingest.py --quick    # 20,000 messages, well under a minute
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from app import load_models  # noqa: E402
from core.db import Base, make_engine, make_session_factory  # noqa: E402
from iot import registry  # noqa: E402
from iot.broker import Broker  # noqa: E402
from iot.ingest.config import IngestConfig  # noqa: E402
from iot.ingest.mqtt import Ingester  # noqa: E402
from iot.models import Reading  # noqa: E402

PREFIX = "bench"
GREENHOUSES, DEVICES_PER_GH = 100, 3
T0 = 1_700_000_000


def connect_props(expiry: int = 3600, receive_max: int | None = None) -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = expiry
    if receive_max:
        props.ReceiveMaximum = receive_max
    return props


def register_session(port: int, client_id: str) -> None:
    """Subscribe a persistent session and leave, so the broker queues messages for it."""
    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.on_subscribe = lambda *a: done.set()
    c.connect("127.0.0.1", port, clean_start=True, properties=connect_props())
    c.loop_start()
    c.subscribe(f"{PREFIX}/+/+/+", qos=1)
    done.wait(5)
    c.disconnect()
    c.loop_stop()


def publish(port: int, n: int) -> float:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub", protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(2000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    started = time.perf_counter()
    devices = [(f"GH{g:03d}", f"GH{g:03d}-d{d}") for g in range(GREENHOUSES) for d in range(DEVICES_PER_GH)]
    last = None
    for i in range(n):
        gh, dev = devices[i % len(devices)]
        ts = T0 + i // len(devices)
        payload = json.dumps({"ts": ts, "air_temperature": 15 + (i % 200) / 10, "air_humidity": 40 + i % 50})
        last = c.publish(f"{PREFIX}/{gh}/{dev}/telemetry", payload, qos=1)
        if i % 5000 == 4999:
            last.wait_for_publish(60)
    last.wait_for_publish(60)
    elapsed = time.perf_counter() - started
    c.disconnect()
    c.loop_stop()
    return elapsed


def drain_raw(port: int, n: int) -> float:
    """A paho subscriber that only counts, resuming its persistent session."""
    got = [0]
    first = [0.0]
    done = threading.Event()

    def on_message(_c, _u, _m):
        if not got[0]:
            first[0] = time.perf_counter()
        got[0] += 1
        if got[0] >= n:
            done.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-raw", protocol=mqtt.MQTTv5)
    c.on_message = on_message
    c.connect("127.0.0.1", port, clean_start=False, properties=connect_props(receive_max=20000))
    thread = threading.Thread(target=c.loop_forever, daemon=True)
    thread.start()
    done.wait(600)
    elapsed = time.perf_counter() - first[0]  # from the first message: connecting is not draining
    c.disconnect()
    thread.join(5)
    return elapsed


def prepare_db(url: str) -> None:
    load_models()
    engine = make_engine(url)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with make_session_factory(engine)() as session:
        for g in range(GREENHOUSES):
            gh = registry.create_greenhouse(session, f"GH{g:03d}", f"Greenhouse {g}")
            for d in range(DEVICES_PER_GH):
                registry.create_device(session, f"GH{g:03d}-d{d}", gh)
        session.commit()
    engine.dispose()


def drain_ingester(
    port: int, url: str, client_id: str, n: int, batch_size: int, hooks=None
) -> tuple[float, int]:
    config = IngestConfig(
        database_url=url,
        mqtt_port=port,
        topic_prefix=PREFIX,
        client_id=client_id,
        batch_size=batch_size,
        batch_ms=100,
        receive_maximum=min(max(20000, batch_size * 4), 65535),
        log_every_s=3600,
    )
    ingester = Ingester(config, hooks=hooks)
    thread = threading.Thread(target=ingester.run, daemon=True)
    thread.start()
    while not ingester.stats.received and thread.is_alive():
        time.sleep(0.0005)
    started = time.perf_counter()  # from the first message, as for the raw subscriber
    while ingester.stats.acked < n and thread.is_alive():
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    ingester.stop()
    thread.join(30)
    with ingester.engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(Reading)).scalar_one()
    ingester.engine.dispose()
    return elapsed, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=200_000, help="messages (default 200,000)")
    parser.add_argument("--quick", action="store_true", help="20,000 messages")
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument(
        "--no-hooks",
        action="store_true",
        help="without the dashboard's rollups and alerts in the transaction (the ingester's own cost)",
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("TEST_DATABASE_URL", ""),
        help="PostgreSQL URL (a scratch database: its tables are dropped)",
    )
    args = parser.parse_args()
    n = 20_000 if args.quick else args.n
    pg_url = args.pg_url if args.pg_url.startswith("postgresql") else ""

    with (
        tempfile.TemporaryDirectory(prefix="tianyuan-bench-") as tmp,
        Broker(data_dir=Path(tmp) / "broker", persistence=False) as broker,
    ):
        sqlite_url = f"sqlite:///{tmp}/bench.sqlite3"
        prepare_db(sqlite_url)
        sessions = ["bench-raw", "bench-sqlite"] + (["bench-pg"] if pg_url else [])
        for cid in sessions:
            register_session(broker.port, cid)
        pub_s = publish(broker.port, n)
        print(
            f"published {n} QoS 1 messages in {pub_s:.1f}s ({n / pub_s:,.0f}/s); queued for "
            f"{len(sessions)} sessions"
        )

        raw_s = drain_raw(broker.port, n)
        raw = n / raw_s
        print(f"(a) raw paho drain:        {raw:>9,.0f} msg/s  ({raw_s:.2f}s)")

        hooks = (None, None) if args.no_hooks else None
        print("rollups and alerts:", "off (--no-hooks)" if args.no_hooks else "on (as in production)")
        sq_s, sq_rows = drain_ingester(broker.port, sqlite_url, "bench-sqlite", n, args.batch_size, hooks)
        sq = n / sq_s
        print(
            f"(b) ingester -> SQLite:    {sq:>9,.0f} msg/s  {sq_rows / sq_s:>9,.0f} readings/s  "
            f"({sq_s:.2f}s, {sq_rows} rows, {sq / raw:.0%} of raw)"
        )
        assert sq_rows == 2 * n, f"expected {2 * n} readings, found {sq_rows}"
        figures = {
            "n": n,
            "raw_per_s": round(raw),
            "persisted_per_s": round(sq),
            "readings_per_s": round(sq_rows / sq_s),
            "ratio": round(sq / raw, 3),
        }

        if pg_url:
            prepare_db(pg_url)
            pg_s, pg_rows = drain_ingester(broker.port, pg_url, "bench-pg", n, args.batch_size, hooks)
            pg = n / pg_s
            print(
                f"(c) ingester -> PostgreSQL:{pg:>9,.0f} msg/s  {pg_rows / pg_s:>9,.0f} readings/s  "
                f"({pg_s:.2f}s, {pg / raw:.0%} of raw)"
            )
            figures.update(pg_persisted_per_s=round(pg), pg_ratio=round(pg / raw, 3))
    print(" ".join(f"{k}={v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
