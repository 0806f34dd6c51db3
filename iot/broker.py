"""Start a Mosquitto broker from a generated configuration (tests, benchmark, demo runner),
or from the shipped production configuration with only its ports and paths changed.

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
    extra: tuple[str, ...] = (),
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
        *extra,
    ]
    if password_file is not None:
        lines += ["allow_anonymous false", f"password_file {password_file}"]
        if acl_file is not None:
            lines.append(f"acl_file {acl_file}")
    else:
        lines.append("allow_anonymous true")
    return "\n".join(lines) + "\n"


PRODUCTION_CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "mosquitto" / "prod.conf"


def production_config(
    *, service_port: int, device_port: int, data_dir: Path, files_dir: Path, source: Path = PRODUCTION_CONFIG
) -> str:
    """``deploy/mosquitto/prod.conf`` as shipped, with only what a test machine needs changed:
    the two ports (both on loopback), the data and files directories, the user to run as,
    log to stderr, and no TLS on the device listener (a test has no certificates). Every
    change must find its line, so a reshaped prod.conf fails loudly instead of being tested
    half."""
    import getpass

    text = source.read_text()
    changes = [
        ("listener 8883\n", f"listener {device_port} 127.0.0.1\n"),
        ("listener 1883 127.0.0.1\n", f"listener {service_port} 127.0.0.1\n"),
        ("certfile /etc/mosquitto/certs/server.crt\n", ""),
        ("keyfile /etc/mosquitto/certs/server.key\n", ""),
        ("/etc/mosquitto/tianyuan/", f"{files_dir}/"),
        ("persistence_location /var/lib/mosquitto/\n", f"persistence_location {data_dir}/\n"),
        ("log_dest syslog\n", "log_dest stderr\n"),
    ]
    for old, new in changes:
        if old not in text:
            raise ValueError(f"{source} has no {old.strip()!r}: update iot.broker.production_config")
        text = text.replace(old, new)
    return f"user {getpass.getuser()}\n" + text


class Broker:
    """A Mosquitto process on 127.0.0.1:``port``; ``stop()`` then ``start()`` restarts it
    with its persisted state (queued QoS 1 messages, sessions)."""

    def __init__(
        self,
        port: int | None = None,
        data_dir: Path | str | None = None,
        *,
        config_text: str | None = None,
        **config,
    ):
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
        # config_text: a whole configuration (e.g. production_config) whose listener is ``port``
        self.config_path.write_text(config_text or render_config(self.port, self.data_dir, **config))
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

    def kill(self) -> None:
        """SIGKILL: no save on the way out (what a crash or the OOM killer does)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

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
