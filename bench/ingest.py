"""Ingest benchmark: how close does the ingester come to the fastest plain subscriber?

Publishes N QoS 1 messages (native JSON, two readings each, spread over 100 greenhouses
and 300 devices) to a private Mosquitto while persistent sessions are subscribed and
offline, so the broker queues every message for each of them. Then it drains them:

  references (each round, in alternating order, every session prepared the same way):
    paho v5    a paho 2.x client that only counts (MQTT 5, QoS 1, automatic acks)
    paho v311  the same on MQTT 3.1.1
    mosquitto_sub  Mosquitto's own client (``-C N``), for scale
  the ingester, as production runs it: ``python -m iot.ingest`` (reader process plus its
  writer process), rollups and alerts on, into SQLite (WAL) and, when --pg-url or
  TEST_DATABASE_URL is given, into PostgreSQL as that server is configured: its ``fsync``
  and ``synchronous_commit`` are printed (``pg_durable=1`` in the last line when both are
  on, the issue's "default durability": ``PG_DURABLE=1 bash .ci/with-postgres ...``; the
  test server runs without them).

A drain's rate is counted from its first message to its N-th acknowledgement (the
ingester's ``messages_acked_total``, acknowledged only after commit). ``ratio`` is the
ingester's rate over the fastest paho reference of the same run. Peak RSS (VmHWM) of the
ingester's reader and writer processes and of the broker is reported, and the CPU time
each process spent a message (``/proc/PID/stat``, user + system, from the first message to
the N-th): the client's, the broker's and, for PostgreSQL, the server's (its postmaster and
children; a worker that exits between the two samples is not counted). The broker runs
without persistence (production's saves on every change and costs it more).

    .venv/bin/python bench/ingest.py            # 200,000 messages, 3 rounds of references
    .venv/bin/python bench/ingest.py --quick    # 20,000 messages, 2 rounds, under a minute
    PG_DURABLE=1 bash .ci/with-postgres .venv/bin/python bench/ingest.py   # and PostgreSQL
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
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
from iot.models import Reading  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "bench"
FILTER = f"{PREFIX}/+/+/+"
GREENHOUSES, DEVICES_PER_GH = 100, 3
T0 = 1_700_000_000
EXPIRY = 3600


def _client(client_id: str, protocol: int) -> mqtt.Client:
    return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)


def _connect(c: mqtt.Client, port: int, protocol: int, *, first: bool) -> None:
    if protocol == mqtt.MQTTv5:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = EXPIRY
        props.ReceiveMaximum = 20000
        c.connect("127.0.0.1", port, clean_start=first, properties=props)
    else:
        c.connect("127.0.0.1", port)


def register_paho(port: int, client_id: str, protocol: int) -> None:
    """Subscribe a persistent session and leave, so the broker queues messages for it."""
    done = threading.Event()
    if protocol == mqtt.MQTTv5:
        c = _client(client_id, protocol)
    else:
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol, clean_session=False
        )
    c.on_subscribe = lambda *a: done.set()
    _connect(c, port, protocol, first=True)
    c.loop_start()
    c.subscribe(FILTER, qos=1)
    assert done.wait(5), f"{client_id}: no SUBACK"
    c.disconnect()
    c.loop_stop()


def register_mosquitto_sub(port: int, client_id: str) -> None:
    subprocess.run(
        ["mosquitto_sub", "-p", str(port), "-i", client_id, "-c", "-q", "1", "-t", FILTER, "-E"],
        check=True,
        timeout=10,
    )


def publish(port: int, n: int) -> float:
    c = _client("bench-pub", mqtt.MQTTv5)
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
    assert last is not None
    last.wait_for_publish(60)
    elapsed = time.perf_counter() - started
    c.disconnect()
    c.loop_stop()
    return elapsed


def drain_paho(port: int, client_id: str, protocol: int, n: int) -> float:
    """A paho subscriber that only counts, resuming its persistent session; seconds from its
    first message to its n-th."""
    got = [0]
    first = [0.0]
    last = [0.0]
    done = threading.Event()

    def on_message(_c: object, _u: object, _m: object) -> None:
        if not got[0]:
            first[0] = time.perf_counter()
        got[0] += 1
        if got[0] >= n:
            last[0] = time.perf_counter()
            done.set()

    if protocol == mqtt.MQTTv5:
        c = _client(client_id, protocol)
    else:
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol, clean_session=False
        )
    c.on_message = on_message
    _connect(c, port, protocol, first=False)
    thread = threading.Thread(target=c.loop_forever, daemon=True)
    thread.start()
    assert done.wait(900), f"{client_id}: {got[0]} of {n} messages"
    c.disconnect()
    thread.join(5)
    return last[0] - first[0]


def drain_mosquitto_sub(port: int, client_id: str, n: int) -> float:
    """mosquitto_sub resuming its session until n messages; seconds including its start (a few ms)."""
    started = time.perf_counter()
    subprocess.run(
        ["mosquitto_sub", "-p", str(port), "-i", client_id, "-c", "-q", "1", "-t", FILTER, "-C", str(n)],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=900,
    )
    return time.perf_counter() - started


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


def _metric(text: str, name: str) -> float:
    found = re.search(rf"^tianyuan_ingest_{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def _hwm_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    return int(found.group(1)) if found else 0


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) a live process has used."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime: fields 14 and 15


def _postgres_cpu_s(postmaster: int) -> float:
    """CPU seconds of the benchmark's PostgreSQL server: its postmaster and the processes it
    started (backends, WAL writer, checkpointer ...), not other servers on the machine."""
    return _cpu_s(postmaster) + sum(_cpu_s(child) for child in _children(postmaster))


def _postgres_server(url: str) -> tuple[int, bool, str]:
    """(postmaster PID, durable, "fsync=on synchronous_commit=on") of the server at ``url``
    (a local one: its data directory holds ``postmaster.pid``)."""
    engine = make_engine(url)
    with engine.connect() as conn:
        data_dir = conn.exec_driver_sql("SHOW data_directory").scalar_one()
        fsync = conn.exec_driver_sql("SHOW fsync").scalar_one()
        sync_commit = conn.exec_driver_sql("SHOW synchronous_commit").scalar_one()
    engine.dispose()
    pid = int((Path(data_dir) / "postmaster.pid").read_text().split()[0])
    return pid, fsync == "on" and sync_commit == "on", f"fsync={fsync} synchronous_commit={sync_commit}"


def _children_cpu_s() -> float:
    """CPU seconds of this process's waited-for children (mosquitto_sub)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


CPU_PARTS = ("reader", "writer", "broker", "postgres")


def _cpu_text(res: dict[str, float]) -> str:
    return ", ".join(f"{p} {res[f'{p}_us']:.1f} µs" for p in CPU_PARTS if f"{p}_us" in res)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _process_cpu(reader: int, children: list[int], broker_pid: int, postmaster: int) -> dict[str, float]:
    cpu = {"reader": _cpu_s(reader), "writer": sum(_cpu_s(c) for c in children), "broker": _cpu_s(broker_pid)}
    if postmaster:
        cpu["postgres"] = _postgres_cpu_s(postmaster)
    return cpu


def drain_ingester(
    port: int, url: str, client_id: str, n: int, batch_size: int, broker_pid: int
) -> dict[str, float]:
    """``python -m iot.ingest`` resuming its session until n messages are acknowledged."""
    metrics_port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "MQTT_URL": f"mqtt://127.0.0.1:{port}",
        "MQTT_TOPIC_PREFIX": PREFIX,
        "MQTT_CLIENT_ID": client_id,
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "iot.ingest",
            "--client-id",
            client_id,
            "--batch-size",
            str(batch_size),
            "--metrics-port",
            str(metrics_port),
            "--log-level",
            "WARNING",
        ],
        env=env,
        cwd=ROOT,
    )
    url_metrics = f"http://127.0.0.1:{metrics_port}/metrics"
    first = last = 0.0
    writer_hwm = 0
    cpu0: dict[str, float] = {}
    cpu1: dict[str, float] = {}
    postmaster = _postgres_server(url)[0] if url.startswith("postgresql") else 0
    deadline = time.monotonic() + 900
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                text = urllib.request.urlopen(url_metrics, timeout=5).read().decode()
            except OSError:
                time.sleep(0.05)
                continue
            now = time.perf_counter()
            children = _children(proc.pid)
            if not first and _metric(text, "messages_received_total") > 0:
                first = now
                cpu0 = _process_cpu(proc.pid, children, broker_pid, postmaster)
            for child in children:
                writer_hwm = max(writer_hwm, _hwm_kib(child))
            if _metric(text, "messages_acked_total") >= n:
                last = now
                cpu1 = _process_cpu(proc.pid, children, broker_pid, postmaster)
                break
            time.sleep(0.05)  # each scrape costs the reader ~0.5 ms of CPU
        reader_hwm = _hwm_kib(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert last, f"{client_id}: the ingester did not acknowledge {n} messages (exit {proc.returncode})"
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(Reading)).scalar_one()
    engine.dispose()
    out = {"s": last - first, "rows": rows, "reader_mib": reader_hwm / 1024, "writer_mib": writer_hwm / 1024}
    for part, seconds in cpu1.items():  # CPU microseconds per message, from first to n-th
        out[f"{part}_us"] = (seconds - cpu0.get(part, 0.0)) * 1e6 / n
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("-n", type=int, default=200_000, help="messages (default 200,000)")
    parser.add_argument("--quick", action="store_true", help="20,000 messages, 2 rounds")
    parser.add_argument("--rounds", type=int, help="rounds of references (default 3, --quick 2)")
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("TEST_DATABASE_URL", ""),
        help="PostgreSQL URL (a scratch database: its tables are dropped)",
    )
    args = parser.parse_args()
    n = 20_000 if args.quick else args.n
    rounds = args.rounds or (2 if args.quick else 3)
    pg_url = args.pg_url if args.pg_url.startswith("postgresql") else ""
    have_mosquitto_sub = subprocess.run(["which", "mosquitto_sub"], capture_output=True).returncode == 0

    with (
        tempfile.TemporaryDirectory(prefix="tianyuan-bench-") as tmp,
        Broker(data_dir=Path(tmp) / "broker", persistence=False) as broker,
    ):
        port = broker.port
        sqlite_url = f"sqlite:///{tmp}/bench.sqlite3"
        prepare_db(sqlite_url)
        if pg_url:
            prepare_db(pg_url)
            _pid, pg_durable, pg_settings = _postgres_server(pg_url)
            print(f"PostgreSQL: {pg_settings} ({'default durability' if pg_durable else 'NOT durable'})")
        refs: list[tuple[str, str]] = []  # (kind, client id), in the order they drain
        for r in range(rounds):
            kinds = ["paho5", "paho311"] if r % 2 == 0 else ["paho311", "paho5"]
            if have_mosquitto_sub:
                kinds.append("mosquitto_sub")
            refs += [(k, f"bench-{k}-{r}") for k in kinds]
        for kind, cid in refs:
            if kind == "mosquitto_sub":
                register_mosquitto_sub(port, cid)
            else:
                register_paho(port, cid, mqtt.MQTTv5 if kind == "paho5" else mqtt.MQTTv311)
        targets = [("sqlite", sqlite_url)] + ([("pg", pg_url)] if pg_url else [])
        for name, _url in targets:
            register_paho(port, f"bench-ingester-{name}", mqtt.MQTTv5)  # the ingester's own session
        pub_s = publish(port, n)
        print(
            f"published {n:,} QoS 1 messages in {pub_s:.1f}s ({n / pub_s:,.0f}/s), queued for "
            f"{len(refs) + len(targets)} sessions; {os.cpu_count()} cores"
        )

        rates: dict[str, list[float]] = {}
        # the ingester drains after the first round and after the last, between references
        ingest_after: dict[int, list[tuple[str, str]]] = {}
        ingest_after.setdefault(len(refs) // rounds - 1, []).extend(targets[:1])
        ingest_after.setdefault(len(refs) - 1, []).extend(targets[1:])
        results: dict[str, dict[str, float]] = {}
        cpu: dict[str, tuple[float, float]] = {}  # kind -> CPU µs a message (client, broker) of its best run
        assert broker.process is not None
        broker_pid = broker.process.pid
        for i, (kind, cid) in enumerate(refs):
            broker0, own0, kids0 = _cpu_s(broker_pid), time.process_time(), _children_cpu_s()
            if kind == "mosquitto_sub":
                seconds = drain_mosquitto_sub(port, cid, n)
                client_s = _children_cpu_s() - kids0
            else:
                seconds = drain_paho(port, cid, mqtt.MQTTv5 if kind == "paho5" else mqtt.MQTTv311, n)
                client_s = time.process_time() - own0
            used = (client_s * 1e6 / n, (_cpu_s(broker_pid) - broker0) * 1e6 / n)
            if n / seconds >= max(rates.get(kind, [0.0])):
                cpu[kind] = used
            rates.setdefault(kind, []).append(n / seconds)
            print(
                f"    {kind:<14} {cid:<24} {n / seconds:>9,.0f} msg/s  "
                f"(CPU a message: client {used[0]:.1f} µs, broker {used[1]:.1f} µs)"
            )
            for name, url in ingest_after.get(i, []):
                res = drain_ingester(port, url, f"bench-ingester-{name}", n, args.batch_size, broker_pid)
                results[name] = res
                print(
                    f"    ingester -> {name:<6} {n / res['s']:>9,.0f} msg/s  ({res['rows']:,} readings; "
                    f"peak RSS reader {res['reader_mib']:.0f} MiB, writer {res['writer_mib']:.0f} MiB; "
                    f"CPU a message: {_cpu_text(res)})"
                )
        broker_mib = _hwm_kib(broker.process.pid) / 1024 if broker.process else 0.0

    reference = max(max(rates["paho5"]), max(rates["paho311"]))
    print("references (best of each):")
    for kind, values in rates.items():
        print(f"  {kind:<14} {max(values):>9,.0f} msg/s  (runs: {', '.join(f'{v:,.0f}' for v in values)})")
    figures: dict[str, object] = {
        "n": n,
        "paho_per_s": round(reference),
        "paho5_per_s": round(max(rates["paho5"])),
        "paho311_per_s": round(max(rates["paho311"])),
    }
    if "mosquitto_sub" in rates:
        figures["mosquitto_sub_per_s"] = round(max(rates["mosquitto_sub"]))
    cores = os.cpu_count() or 1
    best = max(("paho5", "paho311"), key=lambda k: max(rates[k]))
    ref_cpu = sum(cpu[best])
    print(
        f"the reference ({best}) costs {cpu[best][0]:.1f} µs of CPU a message in the client and "
        f"{cpu[best][1]:.1f} µs in the broker: {ref_cpu * reference / 1e6:.2f} of {cores} cores busy"
    )
    print(f"ingester (rollups and alerts on), against the fastest paho reference {reference:,.0f} msg/s:")
    for name, res in results.items():
        rate = n / res["s"]
        assert res["rows"] == 2 * n, f"{name}: expected {2 * n} readings, found {res['rows']}"
        print(f"  {name:<6} {rate:>9,.0f} msg/s  ratio {rate / reference:.2f}")
        # the CPU each message costs, all processes together, bounds the rate on these cores
        total = sum(res.get(f"{p}_us", 0.0) for p in CPU_PARTS)
        print(
            f"         CPU a message {total:.1f} µs ({_cpu_text(res)}): {total * rate / 1e6:.2f} cores busy; "
            f"with all {cores} cores busy at most {cores * 1e6 / total:,.0f} msg/s "
            f"(ratio {cores * 1e6 / total / reference:.2f}); the target 0.7 needs "
            f"{0.7 * reference * total / 1e6:.2f} cores at this cost"
        )
        key0 = "" if name == "sqlite" else f"{name}_"
        figures[f"{key0}cpu_us_per_msg"] = round(total, 1)
        figures[f"{key0}cpu_bound_ratio"] = round(cores * 1e6 / total / reference, 3)
        key = "" if name == "sqlite" else f"{name}_"
        figures[f"{key}persisted_per_s"] = round(rate)
        figures[f"{key}ratio"] = round(rate / reference, 3)
        figures[f"{key}reader_rss_mib"] = round(res["reader_mib"])
        figures[f"{key}writer_rss_mib"] = round(res["writer_mib"])
    if pg_url:
        figures["pg_durable"] = int(pg_durable)
    print(f"broker peak RSS {broker_mib:.0f} MiB (every message queued for every session)")
    figures["broker_rss_mib"] = round(broker_mib)
    print(" ".join(f"{k}={v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
