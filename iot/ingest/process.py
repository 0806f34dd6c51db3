"""The writer process: decodes and stores batches for the network process, on its own core.

The network process (``iot.ingest.mqtt``) holds a ``WriterProcess``: it starts the
child (spawned: no fork of a process with threads and sockets), sends it one batch at a
time over a pipe as (topic, payload, arrival, size, sha256) tuples (payloads too large to
decode already cut, ``writer.shrink``) and collects the replies:
``("done", seq, BatchResult, seconds)`` after the commit, or ``("db_error", seq)`` for
each failed attempt while the database is away (the child retries with backoff). A
message the database refuses never stops the child: ``BatchWriter.store`` quarantines it;
only outages (``writer.is_outage``) are retried, and so is, as a last resort, any error
the store lets out (logged with its traceback), so the child never dies of one batch.

The child (``writer_main``) ends when the pipe closes (the ingester stopped or was
killed: it finishes the transaction it is in, and nothing it stored was acknowledged)
or when it receives ``None``.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from sqlalchemy.exc import DBAPIError

from core import clock
from core.backoff import Backoff
from iot.ingest import log as ingest_log
from iot.ingest.config import IngestConfig
from iot.ingest.log import kv
from iot.ingest.writer import (
    DEFAULT_QUARANTINE_MAX_BYTES,
    BatchResult,
    BatchWriter,
    Message,
    describe,
    ingest_engine,
)

log = logging.getLogger("iot.ingest")

# database retries: 0.5 s doubling to 15 s
DB_RETRY_FIRST_S, DB_RETRY_CAP_S = 0.5, 15.0


@dataclass(frozen=True)
class WriterOptions:
    """What the child needs (it is pickled to the spawned process)."""

    database_url: str
    topic_prefix: str
    tasmota_prefix: str
    unknown_device_policy: str
    timezone: str
    touch_every_s: float
    log_level: int
    quarantine_max_bytes: int = DEFAULT_QUARANTINE_MAX_BYTES
    irrigation_max_s: int = 12 * 3600

    @classmethod
    def from_config(cls, config: IngestConfig, log_level: int) -> WriterOptions:
        return cls(
            database_url=config.database_url,
            topic_prefix=config.topic_prefix,
            tasmota_prefix=config.tasmota_prefix,
            unknown_device_policy=config.unknown_device_policy,
            timezone=config.timezone,
            touch_every_s=config.last_seen_every_s,
            log_level=log_level,
            quarantine_max_bytes=config.quarantine_max_bytes,
            irrigation_max_s=config.irrigation_max_s,
        )


# (topic, payload, arrival, size, sha256) of each message: size and sha256 set if it was cut
Raw = list[tuple[str, bytes, float, int | None, str | None]]


def to_raw(messages: list[Message]) -> Raw:
    return [(m.topic, m.payload, m.arrival, m.size, m.sha256) for m in messages]


def from_raw(raw: Raw) -> list[Message]:
    return [Message(t, p, a, size=n, sha256=h) for t, p, a, n, h in raw]


# --- the parent's side ----------------------------------------------------------------------


class WriterProcess:
    """The network process's handle on its writer child."""

    def __init__(self, options: WriterOptions) -> None:
        self.options = options
        self.process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._started = 0.0

    def start(self) -> None:
        """Start a (new) child; a dead one's pipe is dropped."""
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=writer_main, name="ingest-writer", daemon=True, args=(child, self.options)
        )
        self.process.start()
        self._started = time.monotonic()
        child.close()

    def send(self, seq: int, messages: list[Message]) -> bool:
        """Hand a batch to the child; False if the pipe is broken (the child died)."""
        assert self._conn is not None
        try:
            self._conn.send((seq, to_raw(messages)))
        except OSError:
            return False
        return True

    def receive(self) -> tuple[Any, ...] | None:
        """The next reply if one is waiting (never blocks)."""
        conn = self._conn
        if conn is None:
            return None
        try:
            if not conn.poll():
                return None
            reply: tuple[Any, ...] = conn.recv()
        except (EOFError, OSError):
            return None
        return reply

    def died(self) -> bool:
        """The child is gone (and was not just started)."""
        return (
            self.process is not None
            and not self.process.is_alive()
            and time.monotonic() - self._started > 1.0
        )

    @property
    def exitcode(self) -> int | None:
        return self.process.exitcode if self.process is not None else None

    def stop(self, timeout: float) -> None:
        """Ask the child to end; killed if it is still busy after ``timeout`` (the database is
        away: what it holds was never acknowledged)."""
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.send(None)
        if self.process is None:
            return
        self.process.join(max(0.1, timeout))
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


# --- the child ------------------------------------------------------------------------------


def writer_main(conn: Connection, options: WriterOptions) -> None:
    """The writer process: receive batches, store them, report back."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the ingester decides when we stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ingest_log.setup(options.log_level)
    clock.configure(options.timezone)
    parent = os.getppid()
    writer = BatchWriter(
        ingest_engine(options.database_url),
        topic_prefix=options.topic_prefix,
        tasmota_prefix=options.tasmota_prefix,
        unknown_device_policy=options.unknown_device_policy,
        touch_every_s=options.touch_every_s,
        quarantine_max_bytes=options.quarantine_max_bytes,
        irrigation_max_s=options.irrigation_max_s,
    )
    retry = Backoff(DB_RETRY_FIRST_S, DB_RETRY_CAP_S)
    while True:  # the database may be away when we start: wait for it
        try:
            writer.registry.refresh()
            break
        except Exception as exc:  # noqa: BLE001 - the database may be away, or not migrated yet
            delay = retry.next()
            log.error(kv("db_error", error=describe(exc), retry_in_s=delay))
            time.sleep(delay)
            if os.getppid() != parent:
                return
    retry.reset()
    while True:
        try:
            item = conn.recv()
        except (EOFError, OSError):
            return
        if item is None:
            return
        seq, raw = item
        messages = from_raw(raw)
        while True:
            started = time.perf_counter()
            try:
                result: BatchResult = writer.store(messages)
            except Exception as exc:  # an outage (or the quarantine refusing): wait, retry the batch
                delay = retry.next()
                if isinstance(exc, DBAPIError):
                    log.error(kv("db_error", error=describe(exc), pending=len(messages), retry_in_s=delay))
                else:
                    log.exception(kv("store_failed", error=describe(exc), pending=len(messages)))
                try:
                    conn.send(("db_error", seq))
                except OSError:
                    return
                time.sleep(delay)
                if os.getppid() != parent:
                    return  # the ingester is gone; the broker still has these messages
                continue
            retry.reset()
            try:
                conn.send(("done", seq, result, time.perf_counter() - started))
            except OSError:
                return
            break
