"""CLI: ``flask iot ...`` — greenhouses, devices, broker credentials, the ingester, the
simulator, the quarantine, and ``flask iot data ...`` (rollups, retention, time-based
alerts, demo history). Thin: parse, call a service, commit, print.

The workers have plain entry points too (``python -m iot.ingest``, ``python -m
iot.check_alerts``, ``python -m iot.simulate``); these commands run the same code.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
from flask.cli import AppGroup
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import clock
from core.cli import transaction
from core.web import database, settings

iot_cli = AppGroup("iot", help="Greenhouses, devices, the MQTT ingester, simulator and quarantine.")
greenhouse_cli = AppGroup("greenhouse", help="Manage greenhouses.")
device_cli = AppGroup("device", help="Manage devices and their MQTT credentials.")
quarantine_cli = AppGroup("quarantine", help="List and replay quarantined messages.")
data_cli = AppGroup("data", help="Rollups, retention of raw readings and time-based alerts.")
for _group in (greenhouse_cli, device_cli, quarantine_cli, data_cli):
    iot_cli.add_command(_group)


# --- greenhouses and devices ------------------------------------------------------------


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

    with transaction() as session:
        owner = None
        if owner_name:
            owner = auth.get_user(session, owner_name)
            if owner is None:
                raise click.ClickException(f"no user {owner_name!r}")
        gh = registry.create_greenhouse(
            session, code, name, owner=owner, crop=crop, area_m2=area_m2, timezone=timezone
        )
    click.echo(f"greenhouse {gh.code} ({gh.name}) created")


@greenhouse_cli.command("list")
def greenhouse_list():
    """List greenhouses."""
    from iot import registry

    with transaction() as session:
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

    with transaction() as session:
        gh = None
        if code:
            gh = registry.get_greenhouse(session, code)
            if gh is None:
                raise click.ClickException(f"no greenhouse {code!r}")
        device = registry.create_device(session, device_id, gh, kind=kind, name=name)
    click.echo(f"device {device.device_id} ({device.kind}) created in {code or 'the unassigned pool'}")


@device_cli.command("assign")
@click.argument("device_id")
@click.option("--greenhouse", "code", required=True)
def device_assign(device_id, code):
    """Put a device (e.g. an auto-provisioned one) into a greenhouse."""
    from iot import registry

    with transaction() as session:
        device = registry.get_device(session, device_id)
        gh = registry.get_greenhouse(session, code)
        if device is None or gh is None:
            raise click.ClickException(
                f"no device {device_id!r}" if device is None else f"no greenhouse {code!r}"
            )
        registry.assign_device(session, device, gh)
    click.echo(
        f"device {device_id} assigned to {code}; replay its messages with `flask iot quarantine replay`"
    )


@device_cli.command("list")
@click.option("--unassigned", is_flag=True, help="Only devices not in a greenhouse.")
def device_list(unassigned):
    """List devices with greenhouse, kind, state and last message."""
    from iot import registry
    from iot.models import Greenhouse

    with transaction() as session:
        codes = dict(session.execute(select(Greenhouse.id, Greenhouse.code)).all())
        for d in registry.list_devices(session, unassigned=unassigned):
            seen = d.last_seen_at.strftime("%Y-%m-%d %H:%M:%SZ") if d.last_seen_at else "never"
            state = "online" if d.online else "offline"
            where = codes.get(d.greenhouse_id, "(unassigned)")
            click.echo(f"{d.device_id:20} {where:14} {d.kind:10} {state:7} last_seen={seen}")


@device_cli.command("map")
@click.argument("device_id")
@click.argument("source", required=False)
@click.argument("metric", required=False)
@click.option(
    "--channel", default=None, help="The sensor's channel (default: the name, or the Tasmota driver)."
)
@click.option("--remove", is_flag=True, help="Forget SOURCE.")
def device_map(device_id, source, metric, channel, remove):
    """Map the device's own sensor names to metrics: SOURCE is a SenML name (base name
    included, e.g. urn:dev:ow:10e2073a01080063) or a Tasmota Driver.Key (e.g. ANALOG.A0);
    METRIC a canonical metric (air_temperature, ...) or "ignore". Without SOURCE: list."""
    from iot import registry

    with transaction() as session:
        device = registry.get_device(session, device_id)
        if device is None:
            raise click.ClickException(f"no device {device_id!r}")
        if source is None:
            names = registry.sensor_names(device)
            for name, entry in names.items():
                click.echo(f"{name:40} {entry['metric']:18} channel={entry.get('channel') or '(default)'}")
            if not names:
                click.echo(f"device {device_id} has no sensor names")
            return
        if remove:
            registry.remove_sensor_name(session, device, source)
            click.echo(f"device {device_id}: {source} forgotten")
            return
        if metric is None:
            raise click.UsageError("give METRIC (or --remove)")
        entry = registry.set_sensor_name(session, device, source, metric, channel)
    click.echo(
        f"device {device_id}: {source} -> {entry['metric']}"
        + (f" (channel {entry['channel']})" if "channel" in entry else "")
        + "; the ingester applies it within a minute (replay quarantined messages after that)"
    )


BROKER_DIR_HELP = (
    "Write the broker's four files (devices.passwd/.acl, services.passwd/.acl) into this directory "
    "(production: /etc/mosquitto/tianyuan), from the database: no user is ever dropped silently."
)


def _write_broker_files(
    broker_dir: Path | None, drop_unknown: bool = False, removed: frozenset[str] = frozenset()
) -> None:
    from iot import broker_access

    if broker_dir is None:
        return
    cfg = settings()
    with transaction() as session:  # from what is committed
        written = broker_access.write_broker_files(
            session, broker_dir, prefix=cfg.mqtt_topic_prefix, drop_unknown=drop_unknown, removed=removed
        )
    click.echo(f"broker files written: {', '.join(p.name for p in written)} in {broker_dir}")
    click.echo("reload Mosquitto to apply: systemctl reload mosquitto (SIGHUP)")


@device_cli.command("credentials")
@click.argument("device_id")
@click.option("--broker-dir", type=click.Path(file_okay=False, path_type=Path), help=BROKER_DIR_HELP)
def device_credentials(device_id, broker_dir):
    """Issue a new MQTT password for DEVICE_ID (printed once) and write the broker files."""
    from iot import registry

    with transaction() as session:
        device = registry.get_device(session, device_id)
        if device is None:
            raise click.ClickException(f"no device {device_id!r}")
        password = registry.issue_credentials(session, device)
    click.echo(f"username: {device_id}")
    click.echo(f"password: {password}")
    _write_broker_files(broker_dir)


# --- the broker's service users and files ------------------------------------------------

broker_cli = AppGroup("broker", help="The broker's service users (ingesters, publishers) and files.")
broker_user_cli = AppGroup("user", help="MQTT logins of the services, kept in the database.")
iot_cli.add_command(broker_cli)
broker_cli.add_command(broker_user_cli)


def _role_option():
    from iot.broker_access import ROLES

    return click.option(
        "--role",
        type=click.Choice(list(ROLES)),
        required=True,
        help="; ".join(f"{name}: {what}" for name, (what, _acl) in ROLES.items()),
    )


@broker_user_cli.command("add")
@click.argument("username")
@_role_option()
@click.option("--broker-dir", type=click.Path(file_okay=False, path_type=Path), help=BROKER_DIR_HELP)
def broker_user_add(username, role, broker_dir):
    """Add a service login USERNAME (its password is printed once)."""
    from iot import broker_access

    with transaction() as session:
        password = broker_access.add_service_user(session, username, role)
    click.echo(f"username: {username}")
    click.echo(f"password: {password}")
    _write_broker_files(broker_dir)


@broker_user_cli.command("import")
@click.argument("username")
@_role_option()
@click.option(
    "--from",
    "passwd_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    required=True,
    help="The password file that has the user now (e.g. one made with mosquitto_passwd).",
)
@click.option("--broker-dir", type=click.Path(file_okay=False, path_type=Path), help=BROKER_DIR_HELP)
def broker_user_import(username, role, passwd_file, broker_dir):
    """Keep USERNAME from an existing password file (its password does not change)."""
    from iot import broker_access

    with transaction() as session:
        broker_access.import_service_user(session, username, role, passwd_file)
    click.echo(f"broker user {username} ({role}) imported from {passwd_file}")
    _write_broker_files(broker_dir)


@broker_user_cli.command("password")
@click.argument("username")
@click.option("--broker-dir", type=click.Path(file_okay=False, path_type=Path), help=BROKER_DIR_HELP)
def broker_user_password(username, broker_dir):
    """Give USERNAME a new password (printed once)."""
    from iot import broker_access

    with transaction() as session:
        password = broker_access.new_service_password(session, username)
    click.echo(f"username: {username}")
    click.echo(f"password: {password}")
    _write_broker_files(broker_dir)


@broker_user_cli.command("remove")
@click.argument("username")
@click.option("--broker-dir", type=click.Path(file_okay=False, path_type=Path), help=BROKER_DIR_HELP)
def broker_user_remove(username, broker_dir):
    """Remove the service login USERNAME."""
    from iot import broker_access

    with transaction() as session:
        broker_access.remove_service_user(session, username)
    click.echo(f"broker user {username} removed")
    _write_broker_files(broker_dir, removed=frozenset({username}))


@broker_user_cli.command("list")
def broker_user_list():
    """The service logins and their roles."""
    from iot import broker_access

    with transaction() as session:
        for u in broker_access.list_service_users(session):
            click.echo(f"{u.username:32} {u.role:10} since {u.created_at:%Y-%m-%d}")


@broker_cli.command("files")
@click.option(
    "--broker-dir", type=click.Path(file_okay=False, path_type=Path), required=True, help=BROKER_DIR_HELP
)
@click.option(
    "--drop-unknown", is_flag=True, help="Drop users the database does not know (they lose access)."
)
def broker_files(broker_dir, drop_unknown):
    """Write the broker's password and ACL files from the database."""
    _write_broker_files(broker_dir, drop_unknown)


# --- workers ------------------------------------------------------------------------------


@iot_cli.command("ingest")
@click.option("--shared-group", help="Join MQTT 5 shared subscription $share/NAME/... (scale out).")
@click.option(
    "--client-id",
    help="MQTT client id (default MQTT_CLIENT_ID; in a shared group <id>-<group>-<host>-<n>, "
    "n the lowest free).",
)
@click.option("--batch-size", type=int, default=5000, show_default=True)
@click.option("--batch-ms", type=int, default=100, show_default=True)
@click.option("--metrics-port", type=int, help="Serve Prometheus text on 127.0.0.1:PORT/metrics.")
@click.option(
    "--take-over",
    metavar="CLIENT_ID",
    help="Store what a stopped ingester's session holds, then end that session (and exit).",
)
def ingest(shared_group, client_id, batch_size, batch_ms, metrics_port, take_over):
    """Run the MQTT ingester (same as `python -m iot.ingest`)."""
    from iot.ingest import log as ingest_log
    from iot.ingest.__main__ import run_from_settings
    from iot.ingest.config import ClientIdInUse

    ingest_log.setup()
    try:
        run_from_settings(
            settings(),
            shared_group=shared_group,
            client_id=client_id,
            batch_size=batch_size,
            batch_ms=batch_ms,
            metrics_port=metrics_port,
            take_over=take_over,
        )
    except ClientIdInUse as exc:
        raise click.ClickException(str(exc)) from exc


@iot_cli.command("simulate")
@click.option("--speedup", default=60.0, show_default=True, help="Simulated seconds per real second.")
@click.option("--interval", default=60.0, show_default=True, help="Simulated seconds between readings.")
@click.option("--backfill-hours", default=24.0, show_default=True, help="Start this far in the past.")
@click.option("--duration", type=float, help="Stop after this many real seconds.")
@click.option("--count", type=int, help="Stop after this many messages.")
@click.option("--fault-rate", default=0.002, show_default=True, help="Share of readings with a sensor fault.")
def simulate(speedup, interval, backfill_hours, duration, count, fault_rate):
    """Publish realistic data for every registered greenhouse (same as `python -m iot.simulate`)."""
    from iot import simulate as simulator

    try:
        simulator.run(
            settings(),
            speedup=speedup,
            interval=interval,
            backfill_hours=backfill_hours,
            duration=duration,
            count=count,
            fault_rate=fault_rate,
            session_factory=database().session_factory,
            echo=click.echo,
        )
    except (simulator.SimulatorError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc


# --- quarantine ---------------------------------------------------------------------------


@quarantine_cli.command("list")
@click.option("--reason", help="Only this reason, e.g. unknown_device.")
@click.option("--all", "show_all", is_flag=True, help="Include messages already replayed.")
@click.option("--limit", default=50, show_default=True)
def quarantine_list(reason, show_all, limit):
    """Quarantined messages, newest first, with a count per reason."""
    from iot import quarantine

    with transaction() as session:
        counts = quarantine.counts_by_reason(session, include_replayed=show_all)
        click.echo("by reason: " + (", ".join(f"{r}={n}" for r, n in sorted(counts)) or "none"))
        for q in quarantine.newest(session, reason=reason, include_replayed=show_all, limit=limit):
            payload = bytes(q.payload[:80]).decode("utf-8", "replace").replace("\n", " ")
            facts = [f"seen={q.seen_count}"] if q.seen_count > 1 else []
            if q.size is not None:
                facts.append(f"size={q.size}" + (f" cut_to={len(q.payload)}" if q.truncated else ""))
            if q.sha256:
                facts.append(f"sha256={q.sha256[:12]}")
            click.echo(
                f"#{q.id:<6} {q.received_at:%Y-%m-%d %H:%M:%S} {q.reason:20} {q.topic}  {payload}"
                + (f"  ({q.detail})" if q.detail else "")
                + (f"  [{' '.join(facts)}]" if facts else "")
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
        irrigation_max_s=cfg.irrigation_max_hours * 3600,
    )
    reasons = ", ".join(f"{r}={n}" for r, n in sorted(result.quarantined.items())) or "none"
    click.echo(
        f"done: {result.stored} readings stored, {len(result.still_failing)} messages still failing "
        f"({reasons})"
    )


# --- data: rollups, retention, time-based alerts, demo history ---------------------------------


def _greenhouse_ids(session: Session, codes: tuple[str, ...]) -> list[int] | None:
    from iot.models import Greenhouse

    if not codes:
        return None
    found = dict(
        session.execute(select(Greenhouse.code, Greenhouse.id).where(Greenhouse.code.in_(codes))).all()
    )
    missing = [c for c in codes if c not in found]
    if missing:
        raise click.ClickException(f"no greenhouse {missing[0]!r}")
    return [found[c] for c in codes]


@data_cli.command("rebuild-rollups")
@click.option("--greenhouse", "codes", multiple=True, help="Greenhouse code (repeatable); default all.")
@click.option("--since", help="First day to rebuild (YYYY-MM-DD, local); default the first raw reading.")
def rebuild_rollups(codes: tuple[str, ...], since: str | None):
    """Recompute hourly and daily rollups from raw readings, with a progress bar."""
    from iot import rollups

    start = None
    if since:
        try:
            start = clock.parse_time(since + "T00:00:00" if len(since) == 10 else since, 0)
        except ValueError as exc:
            raise click.BadParameter("use YYYY-MM-DD", param_hint="--since") from exc
    began = time.monotonic()
    with transaction() as session:
        ids = _greenhouse_ids(session, codes)
        with click.progressbar(length=1, label="Rebuilding rollups", show_pos=True) as bar:

            def progress(done: int, total: int) -> None:
                bar.length = total
                bar.update(done - bar.pos)

            written = rollups.rebuild(session, greenhouse_ids=ids, start=start, progress=progress)
    click.echo(f"{written} hourly buckets rebuilt in {time.monotonic() - began:.1f} s")


@data_cli.command("retention")
@click.option(
    "--days", type=int, default=None, help="Keep this many days of raw readings (default RAW_RETENTION_DAYS)."
)
@click.option(
    "--hourly-days",
    type=int,
    default=None,
    help="Also prune hourly rollups older than this (daily are kept).",
)
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
def retention(days: int | None, hourly_days: int | None, dry_run: bool):
    """Delete raw readings older than the retention period; rollups stay."""
    from iot import retention as svc

    now = clock.now_ts()
    days = days if days is not None else settings().raw_retention_days
    plans = [("iot_readings", days)]
    if hourly_days is not None:
        plans.append(("iot_rollups_hourly", hourly_days))
    for table, keep in plans:
        try:
            before = svc.cutoff(now, keep)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from exc
        with transaction() as session:
            n = svc.count_older(session, before, table)
        click.echo(f"{table}: {n} rows older than {keep} days")
        if dry_run or not n:
            continue
        deleted = 0
        with click.progressbar(length=n, label=f"Pruning {table}") as bar, transaction() as session:
            for piece in svc.prune(session, before, table=table):
                session.commit()  # slice by slice: a long prune never holds one big transaction
                deleted += piece.deleted
                bar.update(piece.deleted)
        click.echo(f"{table}: {deleted} rows deleted")


@data_cli.command("check-alerts")
@click.option("--every", type=click.FloatRange(0, 86400), default=0, help="Repeat every N seconds (0: once).")
@click.option("--mqtt/--no-mqtt", default=True, help="Publish alert events to <prefix>/<greenhouse>/alerts.")
def check_alerts(every: float, mqtt: bool):
    """Open/close alerts for silent sensors and offline devices (same as `python -m iot.check_alerts`)."""
    from iot import check_alerts as checker

    checker.run(
        settings(), every=every, mqtt=mqtt, session_factory=database().session_factory, echo=click.echo
    )


@data_cli.command("backfill-demo")
@click.option("--days", type=int, default=14)
def backfill_demo(days: int):
    """Generate ~N days of readings and irrigation for greenhouses that have none (demo)."""
    from iot.demo import backfill_demo_history

    with transaction() as session:
        n = backfill_demo_history(session, days=days)
    click.echo(f"{n} readings generated")
