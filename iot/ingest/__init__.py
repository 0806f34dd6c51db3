"""The MQTT ingester: ``python -m iot.ingest`` (or ``flask iot ingest``, the same code).

Readings, irrigation and device status from MQTT into the database, acknowledged only
after they are committed. One job per module:

- ``config``: ``IngestConfig`` (broker, topics, batching, MQTT session, metrics).
- ``devices``: the device cache (``DeviceRegistry``) and the topic resolver.
- ``writer``: ``decode_batch`` (pure), ``write_batch`` (one batch in the caller's
  transaction) and ``BatchWriter`` (session, commit, per-message fallback).
- ``process``: the writer child process and the network process's handle on it.
- ``mqtt``: ``Ingester``, the paho loop: buffer, flush, acknowledge after commit.
- ``stats``: the counters, ``/metrics`` (Prometheus) and ``/status`` (JSON).
- ``log``: ``key=value`` log lines.
- ``__main__``: the command line.

A crash before the commit means the broker redelivers (persistent session: clean start
off, session expiry); a crash after the commit but before the ack means a redelivery
that the unique keys turn into a no-op. No Flask here (a test keeps it so).
"""
