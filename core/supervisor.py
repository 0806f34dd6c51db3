"""`flask demo run`: start the broker, ingester, simulator, alert checker and web app; Ctrl-C stops them all.

A small process supervisor for the demo (production uses systemd units, see
docs/operations.md). Each child's output is prefixed with its name.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from core.config import PROJECT_ROOT, Settings

COLORS = {"broker": "35", "ingester": "36", "simulator": "33", "alerts": "31", "web": "32"}


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def _pump(name: str, stream) -> None:
    color = COLORS.get(name, "0")
    tty = sys.stdout.isatty()
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").rstrip()
        prefix = f"\033[{color}m{name:>9}\033[0m |" if tty else f"{name:>9} |"
        print(f"{prefix} {line}", flush=True)


def _broker_config(settings: Settings, port: int) -> Path:
    from iot.broker import render_config

    path = settings.instance_path / "mosquitto-demo.conf"
    data = settings.instance_path / "mosquitto-data"
    data.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "# Written by `flask demo run`: a development broker on loopback.\n" + render_config(port, data)
    )
    return path


def plan(settings: Settings, port: int, speedup: float) -> list[tuple[str, list[str]]]:
    """The processes to start, in order, skipping parts that are not built or already running."""
    py = sys.executable
    flask = [py, "-m", "flask", "--app", "app"]
    host, mqtt_port, *_ = settings.mqtt_host_port
    procs: list[tuple[str, list[str]]] = []
    if _port_open(host, mqtt_port):
        print(f"demo: an MQTT broker already listens on {host}:{mqtt_port}; using it")
    else:
        mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(mosquitto).exists():
            raise SystemExit(
                "demo: mosquitto is not installed (make demo installs it: apt-get install mosquitto)"
            )
        procs.append(("broker", [mosquitto, "-c", str(_broker_config(settings, mqtt_port))]))
    if importlib.util.find_spec("iot.ingest") is not None:
        procs.append(("ingester", [py, "-m", "iot.ingest"]))
    if importlib.util.find_spec("iot.simulate") is not None:
        # the demo seed already holds two weeks of history: go on from now, a reading every 10 s
        procs.append(
            (
                "simulator",
                [
                    py,
                    "-m",
                    "iot.simulate",
                    "--speedup",
                    str(speedup),
                    "--backfill-hours",
                    "0",
                    "--interval",
                    "10",
                ],
            )
        )
    # silent sensors and offline devices are noticed by time, not by a message
    procs.append(("alerts", [py, "-m", "iot.check_alerts", "--every", "60"]))
    procs.append(("web", [*flask, "run", "--host", "127.0.0.1", "--port", str(port), "--no-reload"]))
    return procs


def run_demo(port: int = 5000, speedup: float = 60.0) -> int:
    settings = Settings.from_env()
    children: list[tuple[str, subprocess.Popen]] = []
    stopping = threading.Event()

    def stop(*_args) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    exit_code = 0
    try:
        for name, argv in plan(settings, port, speedup):
            proc = subprocess.Popen(
                argv,
                cwd=PROJECT_ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            children.append((name, proc))
            threading.Thread(target=_pump, args=(name, proc.stdout), daemon=True).start()
            if name == "broker":
                host, mqtt_port, *_ = settings.mqtt_host_port
                for _ in range(50):
                    if _port_open(host, mqtt_port):
                        break
                    time.sleep(0.1)
        print(f"demo: Tianyuan is running on http://127.0.0.1:{port}  (Ctrl-C stops everything)", flush=True)
        while not stopping.is_set():
            for name, proc in children:
                if proc.poll() is not None:
                    print(f"demo: {name} exited with code {proc.returncode}; stopping the rest", flush=True)
                    exit_code = proc.returncode or 1
                    stopping.set()
                    break
            stopping.wait(0.5)
    finally:
        for _name, proc in reversed(children):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for _name, proc in reversed(children):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        print("demo: stopped", flush=True)
    return exit_code
