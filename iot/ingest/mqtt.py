"""The network side of the ingester: the paho loop, the buffer, acknowledgements.

    paho network loop -> on_message appends to a buffer
                      -> flush by size (in on_message) or by age (in the main loop)
    flush: the batch goes to the writer process (or, ``writer_process=False``, to a
           ``BatchWriter`` in this process) -> committed -> then acked (MQTT 5 manual
           acks) on the connection it came on, and the batch's alert notifications
           are published.

One batch is written while the next is collected. A database outage keeps messages
unacknowledged in the buffer (the broker stops sending once Receive Maximum is reached)
while the writer retries with backoff. Broker loss: reconnect with backoff; acks of the
old connection are dropped (their messages come again and are duplicates). A refused
connection (bad credentials, not authorised) is retried with a longer backoff, one log line
an attempt.

Retained messages are never news to the ingester: its session was subscribed when they were
published live, so it asks for none at subscribe time (retain handling 2) and drops any that
come with the retain flag all the same. Alert events and Tasmota's housekeeping topics under
the subscribed prefixes are dropped too (``IngestConfig.ignores``); everything else under
them reaches the writer, which quarantines topics of no known shape.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy.engine import Engine

from core.backoff import Backoff
from iot.ingest.config import IGNORED_SUFFIXES, IngestConfig
from iot.ingest.log import kv
from iot.ingest.process import DB_RETRY_CAP_S, DB_RETRY_FIRST_S, WriterOptions, WriterProcess
from iot.ingest.stats import MetricsServer, Stats
from iot.ingest.writer import (
    BatchResult,
    BatchWriter,
    Hooks,
    Message,
    ReadingsHook,
    describe,
    ingest_engine,
    shrink,
)
from iot.mqtt_client import make_client

log = logging.getLogger("iot.ingest")

# broker connection retries: 0.25 s doubling to 10 s, +-20 % jitter
CONNECT_RETRY_FIRST_S, CONNECT_RETRY_CAP_S, CONNECT_RETRY_JITTER = 0.25, 10.0, 0.2
# refused by the broker (credentials, ACL): 1 s doubling to 60 s; it takes a person to fix
REFUSED_RETRY_FIRST_S, REFUSED_RETRY_CAP_S = 1.0, 60.0
# MQTT 5 subscription option: send no retained messages when subscribing
NO_RETAINED = SubscribeOptions.RETAIN_DO_NOT_SEND


class Ingester:
    def __init__(
        self,
        config: IngestConfig,
        engine: Engine | None = None,
        *,
        hooks: Hooks | tuple[ReadingsHook | None, ReadingsHook | None] | None = None,
    ) -> None:
        self.config = config
        self.engine = engine or ingest_engine(config.database_url)
        self.writer = BatchWriter(
            self.engine,
            topic_prefix=config.topic_prefix,
            tasmota_prefix=config.tasmota_prefix,
            unknown_device_policy=config.unknown_device_policy,
            hooks=hooks,
            touch_every_s=config.last_seen_every_s,
            quarantine_max_bytes=config.quarantine_max_bytes,
            irrigation_max_s=config.irrigation_max_s,
        )
        self.stats = Stats(health_stall_s=config.health_stall_s)
        self.stats.waiting = self._waiting
        self.buffer: list[Message] = []
        self.buffer_bytes = 0  # payload bytes in ``buffer``
        self.buffer_started = 0.0
        self.generation = 0
        self.connected = False
        self.subscribed = threading.Event()
        self._stop = threading.Event()
        self._retry_at = 0.0
        self._db_retry = Backoff(DB_RETRY_FIRST_S, DB_RETRY_CAP_S)
        self._client: mqtt.Client | None = None
        self._metrics: MetricsServer | None = None
        # the writer process (config.writer_process, default hooks and engine only)
        self.use_process = config.writer_process and hooks is None and engine is None
        self.writer_process: WriterProcess | None = None
        self._inflight: tuple[int, list[Message]] | None = None
        self._seq = 0
        self._last_poll = 0.0
        self._refused: str | None = None  # the reason of the last CONNACK that refused us
        self._connack_ok = False  # a CONNACK accepted us since the last connection attempt
        self._published: set[int] = set()  # mids of alert events not yet confirmed by the broker
        self._taken_over = threading.Event()  # take_over: the old subscriptions are gone
        self._last_message = self._connected_at = time.monotonic()

    # -- paho callbacks --------------------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:  # logged once by the run loop, with the time of the next try
            self._refused = str(reason_code)
            self.stats.connect_refused += 1
            return
        self._refused = None
        self._connack_ok = True
        self._connected_at = self._last_message = time.monotonic()
        self.connected = True
        self.stats.connects += 1
        log.info(kv("connected", client_id=self.config.client_id, session_present=int(flags.session_present)))
        if self.config.take_over:  # nothing new for this session; what it holds still comes
            client.unsubscribe(self.config.all_filters())
            return
        filters = self.config.filters()
        stale = [f for f in self.config.all_filters() if f not in filters]
        if flags.session_present and stale:
            # a session of an older release or another mode (shared or not) may still hold these:
            # overlapping filters would deliver every message twice (what it queued still comes)
            client.unsubscribe(stale)
        client.subscribe([(f, SubscribeOptions(qos=1, retainHandling=NO_RETAINED)) for f in filters])

    def _on_unsubscribe(self, *_args: Any) -> None:
        if self.config.take_over:
            self._taken_over.set()
            self.subscribed.set()

    def _on_publish(
        self, _client: mqtt.Client, _userdata: Any, mid: int, reason_code: ReasonCode, _properties: Any
    ) -> None:
        if mid not in self._published:
            return
        self._published.discard(mid)
        if reason_code.is_failure:  # e.g. "Not authorized": the broker's ACL refused the topic
            self.stats.alert_publish_errors += 1
            log.error(kv("alert_publish_refused", reason=str(reason_code)))

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _mid: int,
        reason_codes: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        if any(rc.is_failure for rc in reason_codes):
            log.error(kv("subscribe_refused", codes=",".join(str(rc) for rc in reason_codes)))
        else:
            self.stats.subscribed = 1
            self.stats.unsubscribed_since = None
            self.subscribed.set()

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        self.connected = False
        self.generation += 1
        self.stats.disconnects += 1
        self.stats.subscribed = 0
        if self.stats.unsubscribed_since is None:
            self.stats.unsubscribed_since = time.time()
        log.warning(kv("disconnected", reason=str(reason_code), unacked=len(self.buffer)))

    def _on_message(self, client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._last_message = time.monotonic()
        topic = msg.topic
        if msg.retain or (topic.endswith(IGNORED_SUFFIXES) and self.config.ignores(topic)):
            # a retained copy (already received live) or not device data: acknowledged, not stored
            if msg.retain:
                self.stats.retained_ignored += 1
            else:
                self.stats.topics_ignored += 1
            if msg.qos:
                client.ack(msg.mid, msg.qos)
            return
        if not self.buffer:
            self.buffer_started = time.monotonic()
        # arrival in epoch seconds, per message on the hot path: time.time() (core.clock.now()
        # costs ~0.4 µs more a message, ~1 % of this process; a live stream is never frozen)
        arrival = time.time()
        m = Message(topic, msg.payload, arrival, msg.mid, msg.qos, self.generation)  # type: ignore[arg-type]
        if len(m.payload) > self.writer.payload_limit:  # never decoded: keep only what the quarantine keeps
            m = shrink(m, self.writer.payload_limit)
        self.buffer.append(m)
        self.buffer_bytes += len(m.payload)
        self.stats.received += 1
        if len(self.buffer) >= self.config.batch_size or self.buffer_bytes >= self.config.batch_bytes:
            self.flush()

    # -- batches ---------------------------------------------------------------------

    def flush(self) -> bool:
        """Store the buffer (or hand it to the writer process), acknowledging what is committed.

        False if nothing could be done now (database away, or the writer still busy): the
        buffer is kept and the broker stops sending once Receive Maximum is reached."""
        if self.use_process:
            return self._flush_to_process()
        if not self.buffer:
            return True
        if time.monotonic() < self._retry_at:
            return False
        batch = self._next_batch()
        started = time.perf_counter()
        try:
            result = self.writer.store(batch)
        except Exception as exc:  # an outage (BatchWriter.store quarantines what a message causes)
            self.stats.db_errors += 1
            delay = self._db_retry.next()
            self._retry_at = time.monotonic() + delay
            log.error(kv("db_error", error=describe(exc), pending=len(batch), retry_in_s=delay))
            return False
        self._db_retry.reset()
        self._take(batch)
        self._acknowledge(batch, result, time.perf_counter() - started)
        return True

    def _next_batch(self) -> list[Message]:
        """The oldest messages of the buffer, at most ``batch_size`` of them and at most
        ``batch_bytes`` of payload (at least one): while the writer was busy or the database
        away the buffer may have grown to Receive Maximum; a batch, and the writer's memory,
        stay that of one batch whatever the backlog."""
        size, limit = self.config.batch_size, self.config.batch_bytes
        buffer = self.buffer
        if len(buffer) <= size and self.buffer_bytes <= limit:
            return buffer[:]
        total = 0
        for n, m in enumerate(buffer[:size]):
            total += len(m.payload)
            if total > limit and n:
                return buffer[:n]
        return buffer[:size]

    def _take(self, batch: list[Message]) -> None:
        """``batch`` (the buffer's head) leaves the buffer."""
        st = self.stats
        st.buffered_max = max(st.buffered_max, len(self.buffer))
        st.buffered_bytes_max = max(st.buffered_bytes_max, self.buffer_bytes)
        del self.buffer[: len(batch)]
        # one thread (client.loop) appends and takes, so the batch's bytes are exactly what leaves
        self.buffer_bytes = self.buffer_bytes - sum(len(m.payload) for m in batch) if self.buffer else 0

    def _acknowledge(self, batch: list[Message], result: BatchResult, elapsed: float) -> None:
        client = self._client
        acked = 0
        if client is not None:
            for topic, payload in result.notifications:  # alerts opened/closed by this batch
                info = client.publish(topic, payload, qos=1)
                if info.rc == mqtt.MQTT_ERR_SUCCESS:
                    self._published.add(info.mid)  # the broker's PUBACK says if it took it
                else:
                    self.stats.alert_publish_errors += 1
                    log.error(kv("alert_publish_failed", error=mqtt.error_string(info.rc), topic=topic))
            gen = self.generation
            for m in batch:
                if m.qos and m.generation == gen:
                    client.ack(m.mid, m.qos)
                    acked += 1
        st = self.stats
        st.acked += acked
        st.stored += result.stored
        st.duplicates += result.duplicates
        st.irrigation += result.irrigation
        st.status += result.status
        st.quarantined.update(result.quarantined)
        st.batches += 1
        st.batch_seconds += elapsed
        st.batch_seconds_max = max(st.batch_seconds_max, elapsed)
        st.alert_errors += result.alert_errors
        st.dropped.update(result.dropped)
        st.committed()
        if result.quarantined:
            log.warning(kv("quarantined", **{r: n for r, n in result.quarantined.items()}))

    def _waiting(self) -> tuple[int, float | None]:
        """(messages received and not yet acknowledged, arrival of the oldest): for the gauges
        and /health (read from the metrics thread: local references only)."""
        inflight, buffer = self._inflight, self.buffer
        held = inflight[1] if inflight is not None else []
        oldest = held[0].arrival if held else (buffer[0].arrival if buffer else None)
        return len(held) + len(buffer), oldest

    # -- the writer process ----------------------------------------------------------

    def _start_writer(self) -> None:
        if self.writer_process is None:
            options = WriterOptions.from_config(self.config, logging.getLogger().level or logging.INFO)
            self.writer_process = WriterProcess(options)
        self.writer_process.start()
        if self._inflight is not None:  # a crashed writer's batch: send it again
            self.writer_process.send(*self._inflight)
        self.stats.writer_starts += 1

    def _poll_writer(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_poll < 0.002:  # a poll is a system call: not per message
            return
        self._last_poll = now
        proc = self.writer_process
        assert proc is not None
        while self._inflight is not None:
            reply = proc.receive()
            if reply is None:
                break
            if reply[0] == "db_error":
                self.stats.db_errors += 1
                continue
            _done, _seq, result, elapsed = reply
            batch = self._inflight[1]
            self._inflight = None
            self._acknowledge(batch, result, elapsed)
        if self._inflight is not None and proc.died():
            log.error(kv("writer_died", exitcode=proc.exitcode, pending=len(self._inflight[1])))
            self._start_writer()

    def _flush_to_process(self) -> bool:
        self._poll_writer()
        if not self.buffer:
            return True
        if self._inflight is not None:
            return False  # one batch at a time: this one is collected while that one is written
        batch = self._next_batch()  # the rest is already due: it goes as soon as this is stored
        self._take(batch)
        self._seq += 1
        self._inflight = (self._seq, batch)
        assert self.writer_process is not None
        if not self.writer_process.send(self._seq, batch):
            self._poll_writer(force=True)  # the writer died: restarted, and the batch sent again
        return True

    def _stop_writer(self, deadline: float) -> None:
        while (self.buffer or self._inflight is not None) and time.monotonic() < deadline:
            if not self.flush():
                time.sleep(0.01)
            self._poll_writer(force=True)
        assert self.writer_process is not None
        self.writer_process.stop(deadline - time.monotonic())
        self._poll_writer(force=True)

    # -- running ---------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        client = make_client(self.config.broker, self.config.client_id, manual_ack=True)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        client.on_publish = self._on_publish
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _connect(self, client: mqtt.Client) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.config.session_expiry_s
        props.ReceiveMaximum = self.config.receive_maximum_sent
        client.connect(
            self.config.mqtt_host,
            self.config.mqtt_port,
            keepalive=self.config.keepalive_s,
            clean_start=False,
            properties=props,
        )

    def stop(self) -> None:
        self._stop.set()

    def _reconnect_delay(self, retry: Backoff, refused: Backoff) -> float:
        """Seconds to wait before connecting again after the connection ended (0: at once),
        and the one log line of a refusal. Refused by the broker: 1 s doubling to 60 s. Closed
        before any CONNACK, or a connection that lasted under 5 s (e.g. another client took
        this client id): 0.25 s doubling to 10 s. A connection that lasted: at once."""
        if self._refused is not None:
            delay = refused.next()
            log.error(
                kv(
                    "connect_refused",
                    reason=self._refused,
                    user=self.config.mqtt_username or "",
                    client_id=self.config.client_id,
                    refused=self.stats.connect_refused,
                    retry_in_s=round(delay, 2),
                )
            )
            self._refused = None
            return delay
        if self._connack_ok:
            refused.reset()
        if self._connack_ok and time.monotonic() - self._connected_at >= 5.0:
            retry.reset()
            return 0.0
        delay = retry.next()
        log.warning(
            kv(
                "connection_lost",
                accepted=int(self._connack_ok),
                client_id=self.config.client_id,
                retry_in_s=round(delay, 2),
            )
        )
        return delay

    def _drained(self) -> bool:
        """take_over: all the old session held is stored and acknowledged."""
        quiet = time.monotonic() - self._last_message >= self.config.take_over_idle_s
        return quiet and not self.buffer and self._inflight is None

    def run(self, *, max_seconds: float | None = None) -> Stats:
        """Run until ``stop()`` (or SIGTERM/SIGINT via ``python -m iot.ingest``). Returns the counters."""
        if self.use_process:
            self._start_writer()
        else:
            self.writer.registry.refresh()
        client = self._client = self._make_client()
        if self.config.metrics_port is not None:
            self._metrics = MetricsServer(self.stats, self.config.metrics_host, self.config.metrics_port)
            self.config = replace(self.config, metrics_port=self._metrics.port)  # the one chosen for 0
        retry = Backoff(CONNECT_RETRY_FIRST_S, CONNECT_RETRY_CAP_S, jitter=CONNECT_RETRY_JITTER)
        refused = Backoff(REFUSED_RETRY_FIRST_S, REFUSED_RETRY_CAP_S, jitter=CONNECT_RETRY_JITTER)
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        last_log = time.monotonic()
        last_received = 0
        log.info(
            kv(
                "start",
                broker=str(self.config.broker),
                filters=",".join(self.config.filters()),
                batch_size=self.config.batch_size,
            )
        )
        need_connect = True
        while not self._stop.is_set() and (deadline is None or time.monotonic() < deadline):
            if need_connect:
                try:
                    if self.stats.connects == 0 and self.generation == 0:
                        self._connect(client)
                    else:
                        client.reconnect()
                    need_connect = False
                    self._connack_ok = False  # until the broker's CONNACK accepts us
                except (OSError, ValueError) as exc:
                    delay = retry.next()
                    log.warning(kv("connect_failed", error=str(exc), retry_in_s=delay))
                    self._stop.wait(delay)
                    self.flush()  # store what we have (acks of an old connection are dropped anyway)
                    continue
            rc = client.loop(timeout=0.05)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                if self.connected:
                    self.connected = False
                    self.generation += 1
                need_connect = True
                delay = self._reconnect_delay(retry, refused)
                if delay:
                    self._stop.wait(delay)
                    self.flush()  # store what we have (acks of an old connection are dropped anyway)
                    continue
            elif self.config.take_over and self._taken_over.is_set() and self._drained():
                log.info(kv("taken_over", client_id=self.config.client_id, stored=self.stats.stored))
                break
            if self._inflight is not None:
                self._poll_writer()
            if self.buffer and (
                time.monotonic() - self.buffer_started >= self.config.batch_ms / 1000.0 or not self.connected
            ):
                self.flush()
            now = time.monotonic()
            if now - last_log >= self.config.log_every_s:
                rate = (self.stats.received - last_received) / (now - last_log)
                last_received = self.stats.received
                last_log = now
                log.info(
                    kv(
                        "progress",
                        rate_per_s=round(rate, 1),
                        **self.stats.log_fields(),
                    )
                )
        # shutting down: store what we have and ack it while still connected; if the database
        # stays away, give up after a few seconds (unacknowledged messages stay with the broker)
        if self.use_process:
            self._stop_writer(time.monotonic() + 3.0)
        else:
            for _ in range(20):
                if self.flush():
                    break
                time.sleep(0.1)
        try:
            client.loop(timeout=0.05)
            if self.config.take_over:  # end the session: the broker forgets it now
                props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
                props.SessionExpiryInterval = 0
                client.disconnect(properties=props)
            else:
                client.disconnect()
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
        if self._metrics is not None:
            self._metrics.close()
        log.info(kv("stop", **self.stats.log_fields()))
        return self.stats
