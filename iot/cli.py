"""CLI: ``flask iot ...`` — greenhouses, devices, broker credentials, the ingester, the
simulator and the quarantine. Thin: parse, call a service, commit, print."""

from __future__ import annotations

from pathlib import Path

import click
from flask.cli import AppGroup
from sqlalchemy import select

from core.web import database, settings

iot_cli = AppGroup("iot", help="Greenhouses, devices, the MQTT ingester, simulator and quarantine.")
greenhouse_cli = AppGroup("greenhouse", help="Manage greenhouses.")
device_cli = AppGroup("device", help="Manage devices and their MQTT credentials.")
quarantine_cli = AppGroup("quarantine", help="List and replay quarantined messages.")
iot_cli.add_command(greenhouse_cli)
iot_cli.add_command(device_cli)
iot_cli.add_command(quarantine_cli)


def _session():
    return database().session_factory()


def _fail(exc: Exception):
    raise click.ClickException(str(exc)) from exc


@greenhouse_cli.command("add")
@click.argument("code")
@click.option("--name", required=True)
@click.option("--owner", "owner_name", help="Username of the farmer who owns it.")
@click.option(
    "--timezone", default=None, help="Zone of the devices' local clocks (default TIANYUAN_TIMEZONE)."
)
@click.option("--crop", help="e.g. peach, grape, cucumber, seedling, mushroom, melon")
@click.option("--area", "area_m2", type=float, help="Area in m².")
def greenhouse_add(code, name, owner_name, timezone, crop, area_m2):
    """Register a greenhouse CODE (used in MQTT topics)."""
    from core import auth
    from iot import registry

    with _session() as session:
        owner = None
        if owner_name:
            owner = auth.get_user(session, owner_name)
            if owner is None:
                raise click.ClickException(f"no user {owner_name!r}")
        try:
            gh = registry.create_greenhouse(
                session, code, name, owner=owner, crop=crop, area_m2=area_m2, timezone=timezone
            )
        except registry.RegistryError as exc:
            _fail(exc)
        session.commit()
        click.echo(f"greenhouse {gh.code} ({gh.name}) created")


@greenhouse_cli.command("list")
def greenhouse_list():
    """List greenhouses."""
    from iot import registry

    with _session() as session:
        for gh in registry.list_greenhouses(session):
            click.echo(
                f"{gh.code:14} {gh.name:24} {gh.crop or '-':10} {gh.timezone:16} devices={len(gh.devices)}"
            )


@device_cli.command("add")
@click.argument("device_id")
@click.option("--greenhouse", "code", help="Greenhouse code (omit to leave it unassigned).")
@click.option(
    "--kind", type=click.Choice(["sensor", "controller", "camera"]), default="sensor", show_default=True
)
@click.option("--name", default=None)
def device_add(device_id, code, kind, name):
    """Register a device DEVICE_ID (the id it uses in MQTT topics)."""
    from iot import registry

    with _session() as session:
        gh = None
        if code:
            gh = registry.get_greenhouse(session, code)
            if gh is None:
                raise click.ClickException(f"no greenhouse {code!r}")
        try:
            device = registry.create_device(session, device_id, gh, kind=kind, name=name)
        except registry.RegistryError as exc:
            _fail(exc)
        session.commit()
        click.echo(f"device {device.device_id} ({device.kind}) created in {code or 'the unassigned pool'}")


@device_cli.command("assign")
@click.argument("device_id")
@click.option("--greenhouse", "code", required=True)
def device_assign(device_id, code):
    """Put a device (e.g. an auto-provisioned one) into a greenhouse."""
    from iot import registry

    with _session() as session:
        device = registry.get_device(session, device_id)
        gh = registry.get_greenhouse(session, code)
        if device is None or gh is None:
            raise click.ClickException(
                f"no device {device_id!r}" if device is None else f"no greenhouse {code!r}"
            )
        registry.assign_device(session, device, gh)
        session.commit()
        click.echo(
            f"device {device_id} assigned to {code}; replay its messages with `flask iot quarantine replay`"
        )


@device_cli.command("list")
@click.option("--unassigned", is_flag=True, help="Only devices not in a greenhouse.")
def device_list(unassigned):
    """List devices with greenhouse, kind, state and last message."""
    from iot import registry
    from iot.models import Greenhouse

    with _session() as session:
        codes = dict(session.execute(select(Greenhouse.id, Greenhouse.code)).all())
        for d in registry.list_devices(session, unassigned=unassigned):
            seen = d.last_seen_at.strftime("%Y-%m-%d %H:%M:%SZ") if d.last_seen_at else "never"
            state = "online" if d.online else "offline"
            where = codes.get(d.greenhouse_id, "(unassigned)")
            click.echo(f"{d.device_id:20} {where:14} {d.kind:10} {state:7} last_seen={seen}")


@device_cli.command("credentials")
@click.argument("device_id")
@click.option(
    "--passwd-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write Mosquitto's password_file (all devices with credentials) here.",
)
@click.option(
    "--acl-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the matching Mosquitto acl_file here.",
)
def device_credentials(device_id, passwd_file, acl_file):
    """Issue a new MQTT password for DEVICE_ID (printed once) and write the broker files."""
    from iot import registry

    cfg = settings()
    with _session() as session:
        device = registry.get_device(session, device_id)
        if device is None:
            raise click.ClickException(f"no device {device_id!r}")
        password = registry.issue_credentials(session, device)
        session.commit()
        if passwd_file:
            passwd_file.write_text(registry.password_file(session))
            passwd_file.chmod(0o600)
        if acl_file:
            acl_file.write_text(registry.acl_file(session, prefix=cfg.mqtt_topic_prefix))
    click.echo(f"username: {device_id}")
    click.echo(f"password: {password}")
    if passwd_file or acl_file:
        click.echo("broker files written; reload Mosquitto (kill -HUP) to apply")


@iot_cli.command("ingest")
@click.option("--shared-group", help="Join MQTT 5 shared subscription $share/NAME/... (scale out).")
@click.option("--client-id", help="Fixed MQTT client id of this instance (default MQTT_CLIENT_ID).")
@click.option("--batch-size", type=int, default=5000, show_default=True)
@click.option("--batch-ms", type=int, default=100, show_default=True)
@click.option("--metrics-port", type=int, help="Serve Prometheus text on 127.0.0.1:PORT/metrics.")
def ingest(shared_group, client_id, batch_size, batch_ms, metrics_port):
    """Run the MQTT ingester (same as `python -m iot.ingest`)."""
    import logging

    from iot.ingest.__main__ import run_from_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    run_from_settings(
        settings(),
        shared_group=shared_group,
        client_id=client_id,
        batch_size=batch_size,
        batch_ms=batch_ms,
        metrics_port=metrics_port,
    )


@iot_cli.command("simulate")
@click.option("--speedup", default=60.0, show_default=True, help="Simulated seconds per real second.")
@click.option("--interval", default=60.0, show_default=True, help="Simulated seconds between readings.")
@click.option("--backfill-hours", default=24.0, show_default=True, help="Start this far in the past.")
@click.option("--duration", type=float, help="Stop after this many real seconds.")
@click.option("--count", type=int, help="Stop after this many messages.")
@click.option("--fault-rate", default=0.002, show_default=True, help="Share of readings with a sensor fault.")
def simulate(speedup, interval, backfill_hours, duration, count, fault_rate):
    """Publish realistic data for every registered greenhouse."""
    import paho.mqtt.client as mqtt

    from iot.simulate import Simulator, load_greenhouses

    cfg = settings()
    with _session() as session:
        greenhouses = load_greenhouses(session)
    if not greenhouses:
        raise click.ClickException("no greenhouses: run `flask demo seed` or `flask iot greenhouse add`")
    host, port, user, password, tls = cfg.mqtt_host_port
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="tianyuan-simulator", protocol=mqtt.MQTTv5
    )
    client.max_queued_messages_set(0)
    if user:
        client.username_pw_set(user, password)
    if tls:
        client.tls_set()
    client.connect(host, port)
    client.loop_start()
    sim = Simulator(
        greenhouses,
        prefix=cfg.mqtt_topic_prefix,
        speedup=speedup,
        interval_s=interval,
        backfill_hours=backfill_hours,
        fault_rate=fault_rate,
    )
    devices = sum(len(g.devices) for g in greenhouses)
    click.echo(f"simulating {len(greenhouses)} greenhouses, {devices} devices at {speedup:g}x; Ctrl-C stops")
    try:
        sim.run(client, duration_s=duration, max_messages=count)
    except KeyboardInterrupt:
        pass
    finally:
        client.loop_stop()
        client.disconnect()
    click.echo(f"published {sim.published} messages")


@quarantine_cli.command("list")
@click.option("--reason", help="Only this reason, e.g. unknown_device.")
@click.option("--all", "show_all", is_flag=True, help="Include messages already replayed.")
@click.option("--limit", default=50, show_default=True)
def quarantine_list(reason, show_all, limit):
    """Quarantined messages, newest first, with a count per reason."""
    from iot import quarantine

    with _session() as session:
        counts = quarantine.counts_by_reason(session, include_replayed=show_all)
        click.echo("by reason: " + (", ".join(f"{r}={n}" for r, n in sorted(counts)) or "none"))
        for q in quarantine.newest(session, reason=reason, include_replayed=show_all, limit=limit):
            payload = bytes(q.payload[:80]).decode("utf-8", "replace").replace("\n", " ")
            click.echo(
                f"#{q.id:<6} {q.received_at:%Y-%m-%d %H:%M:%S} {q.reason:20} {q.topic}  {payload}"
                + (f"  ({q.detail})" if q.detail else "")
            )


@quarantine_cli.command("replay")
@click.option("--reason", help="Only messages quarantined for this reason.")
@click.option("--id", "ids", type=int, multiple=True, help="Only these ids (repeatable).")
def quarantine_replay(reason, ids):
    """Feed quarantined messages through the ingester's checks again (after fixing the cause)."""
    from iot import quarantine

    cfg = settings()

    def progress(done, total, result):
        click.echo(
            f"replay {done}/{total}: stored={result.stored} duplicates={result.duplicates} "
            f"still_quarantined={len(result.still_failing)}"
        )

    result = quarantine.replay(
        database().engine,
        topic_prefix=cfg.mqtt_topic_prefix,
        reason=reason,
        ids=ids or None,
        progress=progress,
        unknown_device_policy=cfg.unknown_device_policy,
    )
    reasons = ", ".join(f"{r}={n}" for r, n in sorted(result.quarantined.items())) or "none"
    click.echo(
        f"done: {result.stored} readings stored, {len(result.still_failing)} messages still failing "
        f"({reasons})"
    )


def _nest_dashboard_commands() -> None:
    """``flask iot data ...`` (rollups, retention, alerts) lives in iot.dashboard_cli (issue #4)."""
    try:
        from iot.dashboard_cli import data_cli
    except ImportError:
        return
    iot_cli.add_command(data_cli)


_nest_dashboard_commands()
