"""A small process supervisor: start a list of commands, prefix each one's output with its
name, and stop them all when one exits or on Ctrl-C / SIGTERM.

No domain here: the app (``app.demo_processes``) says which processes the demo runs.
Production uses systemd units instead (docs/operations.md).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

COLORS = ("36", "33", "31", "32", "35", "34")


@dataclass(frozen=True)
class Process:
    name: str
    argv: list[str]
    ready: Callable[[], bool] | None = None  # wait for this (up to 5 s) before starting the next


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def _pump(name: str, color: str, stream: IO[bytes]) -> None:
    tty = sys.stdout.isatty()
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").rstrip()
        prefix = f"\033[{color}m{name:>9}\033[0m |" if tty else f"{name:>9} |"
        print(f"{prefix} {line}", flush=True)


def run(processes: Sequence[Process], *, cwd: Path, banner: str = "") -> int:
    """Run ``processes`` until one exits (its code is returned) or we are told to stop (0)."""
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    stopping = threading.Event()

    def stop(*_args: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    exit_code = 0
    try:
        for i, proc_spec in enumerate(processes):
            proc = subprocess.Popen(
                proc_spec.argv,
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            children.append((proc_spec.name, proc))
            assert proc.stdout is not None
            color = COLORS[i % len(COLORS)]
            threading.Thread(target=_pump, args=(proc_spec.name, color, proc.stdout), daemon=True).start()
            if proc_spec.ready is not None:
                for _ in range(50):
                    if proc_spec.ready():
                        break
                    time.sleep(0.1)
        if banner:
            print(banner, flush=True)
        while not stopping.is_set():
            for name, proc in children:
                if proc.poll() is not None:
                    print(f"{name} exited with code {proc.returncode}; stopping the rest", flush=True)
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
        print("stopped", flush=True)
    return exit_code
