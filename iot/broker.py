"""Start a Mosquitto broker from a generated configuration (tests, benchmark, demo runner).

with Broker(port=free_port(), data_dir=tmp) as broker:
    ...  broker.url -> "mqtt://127.0.0.1:PORT"
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")


def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in MOSQUITTO_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render_config(
    port: int,
    data_dir: Path,
    *,
    persistence: bool = True,
    max_queued_messages: int = 1_000_000,
    password_file: Path | None = None,
    acl_file: Path | None = None,
) -> str:
    """A mosquitto.conf for one loopback listener (see deploy/mosquitto/ for real deployments)."""
    import getpass

    lines = [
        # as root, Mosquitto would switch to the "mosquitto" user, which cannot write data_dir
        f"user {getpass.getuser()}",
        "per_listener_settings false",
        f"listener {port} 127.0.0.1",
        f"persistence {'true' if persistence else 'false'}",
        f"persistence_location {data_dir}/",
        "autosave_interval 1800",
        f"max_queued_messages {max_queued_messages}",
        "max_queued_bytes 0",
        "max_inflight_messages 0",
        "max_packet_size 1048576",
        "persistent_client_expiration 14d",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "connection_messages false",
    ]
    if password_file is not None:
        lines += ["allow_anonymous false", f"password_file {password_file}"]
        if acl_file is not None:
            lines.append(f"acl_file {acl_file}")
    else:
        lines.append("allow_anonymous true")
    return "\n".join(lines) + "\n"


class Broker:
    """A Mosquitto process on 127.0.0.1:``port``; ``stop()`` then ``start()`` restarts it
    with its persisted state (queued QoS 1 messages, sessions)."""

    def __init__(self, port: int | None = None, data_dir: Path | str | None = None, **config):
        import tempfile

        exe = find_mosquitto()
        if exe is None:
            raise RuntimeError(
                "mosquitto not found: install it (apt-get install mosquitto) or `make system-deps`"
            )
        self.exe = exe
        self.port = port or free_port()
        self._tmp = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="tianyuan-mosquitto-")
            data_dir = self._tmp.name
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.data_dir / "mosquitto.conf"
        self.config_path.write_text(render_config(self.port, self.data_dir, **config))
        self.log_path = self.data_dir / "mosquitto.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> Broker:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        self.process = subprocess.Popen(
            [self.exe, "-c", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on port {self.port} within {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Mosquitto saves its persistence file on the way out) and wait."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
