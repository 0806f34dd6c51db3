"""Who may log in to the broker and what each login may do: the devices (``Device.password_hash``)
and the services (``BrokerUser``: ingesters, alert publishers, the simulator), and the four
files Mosquitto reads, written from the database alone (services: take a session, never commit).

The production broker (``deploy/mosquitto/prod.conf``) has two listeners with their own files
(``per_listener_settings true``)::

    devices.passwd  devices.acl    the field listener (TLS, 8883); use_username_as_clientid:
                                   a device's client id is its user name, so it can never
                                   take, kick or wipe another client's session
    services.passwd services.acl   the loopback listener (1883): only service users, with
                                   the client ids they choose (several ingesters in a group,
                                   several web workers publishing at once)

A device's password is valid on the field listener only, a service's on the loopback one only.
``write_broker_files`` rewrites all four from the database and refuses to drop a user that an
existing file has and the database does not know (a hand-added service user would otherwise be
locked out by the next device's credentials); import such a user with ``import_service_user``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import N_, DomainError
from iot.models import BrokerUser, Device, Greenhouse

# role -> (what it is for, its ACL lines; {prefix} and {tele} are the topic prefixes)
ROLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "ingester": (
        "reads all device data (python -m iot.ingest) and publishes alert events",
        ("topic read {prefix}/#", "topic read {tele}/#", "topic write {prefix}/+/alerts"),
    ),
    "publisher": (
        "publishes alert events only (python -m iot.check_alerts, the web app)",
        ("topic write {prefix}/+/alerts",),
    ),
    "simulator": (
        "publishes simulated device data (python -m iot.simulate); not for production",
        ("topic write {prefix}/#", "topic write {tele}/#"),
    ),
}
# the services' client ids begin with this (tianyuan-ingester, tianyuan-web-..., ...); a device
# may not be called so, or its client id (its user name on the field listener) could take one
RESERVED_PREFIX = "tianyuan-"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")
HASH_RE = re.compile(r"\$[67]\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+")
FILES = ("devices.passwd", "devices.acl", "services.passwd", "services.acl")


class BrokerAccessError(DomainError):
    """A broker user or broker file operation was refused."""


def mosquitto_hash(password: str, *, salt: bytes | None = None, iterations: int = 101) -> str:
    """A password hash in Mosquitto 2's password-file format (PBKDF2-SHA512, ``$7$``)."""
    salt = salt or secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def new_password() -> str:
    return secrets.token_urlsafe(18)


# --- service users ----------------------------------------------------------------------


def get_service_user(session: Session, username: str) -> BrokerUser | None:
    return session.scalar(select(BrokerUser).where(BrokerUser.username == username))


def list_service_users(session: Session) -> list[BrokerUser]:
    return list(session.scalars(select(BrokerUser).order_by(BrokerUser.username)))


def _check_new_user(session: Session, username: str, role: str) -> None:
    if not NAME_RE.fullmatch(username):
        raise BrokerAccessError(
            N_("%(name)s is not a broker user name (letters, digits, . _ -, at most 80)"), name=username[:80]
        )
    if role not in ROLES:
        raise BrokerAccessError(
            N_("no broker role %(role)s (one of: %(roles)s)"), role=role[:40], roles=", ".join(ROLES)
        )
    if get_service_user(session, username) is not None:
        raise BrokerAccessError(N_("broker user %(name)s exists already"), name=username)
    if session.scalar(select(Device.id).where(Device.device_id == username)) is not None:
        raise BrokerAccessError(N_("%(name)s is a device's user name"), name=username)


def add_service_user(session: Session, username: str, role: str) -> str:
    """A new service login with a random password, returned once (only its hash is kept)."""
    _check_new_user(session, username, role)
    password = new_password()
    session.add(BrokerUser(username=username, role=role, password_hash=mosquitto_hash(password)))
    session.flush()
    return password


def import_service_user(session: Session, username: str, role: str, passwd_file: Path) -> BrokerUser:
    """Keep a user someone added to a password file by hand (``mosquitto_passwd``): its hash
    is read from ``passwd_file`` into the database, so its password stays what it was."""
    _check_new_user(session, username, role)
    entries = read_passwd(passwd_file)
    if username not in entries:
        raise BrokerAccessError(
            N_("%(path)s has no user %(name)s"), path=str(passwd_file)[:200], name=username
        )
    if not HASH_RE.fullmatch(entries[username]):
        raise BrokerAccessError(
            N_("the password of %(name)s in %(path)s is not a Mosquitto 2 hash"),
            name=username,
            path=str(passwd_file)[:200],
        )
    user = BrokerUser(username=username, role=role, password_hash=entries[username])
    session.add(user)
    session.flush()
    return user


def new_service_password(session: Session, username: str) -> str:
    user = _service_user(session, username)
    password = new_password()
    user.password_hash = mosquitto_hash(password)
    session.flush()
    return password


def remove_service_user(session: Session, username: str) -> None:
    session.delete(_service_user(session, username))
    session.flush()


def _service_user(session: Session, username: str) -> BrokerUser:
    user = get_service_user(session, username)
    if user is None:
        raise BrokerAccessError(N_("no broker user %(name)s"), name=username[:80])
    return user


def check_device_login_name(device_id: str) -> None:
    """A device that gets a login must not be able to use a service's client id."""
    if device_id.startswith(RESERVED_PREFIX):
        raise BrokerAccessError(
            N_(
                "a device id beginning with %(prefix)s cannot log in to the broker (the services' client ids)"
            ),
            prefix=RESERVED_PREFIX,
        )


# --- the broker's files -------------------------------------------------------------------


@dataclass(frozen=True)
class BrokerFiles:
    devices_passwd: str
    devices_acl: str
    services_passwd: str
    services_acl: str

    def by_name(self) -> dict[str, str]:
        return dict(
            zip(
                FILES,
                (self.devices_passwd, self.devices_acl, self.services_passwd, self.services_acl),
                strict=True,
            )
        )


def render(session: Session, *, prefix: str = "farm", tasmota_prefix: str = "tele") -> BrokerFiles:
    """The four files from the database (devices with credentials, service users)."""
    header = "# Generated by `flask iot broker files` from the database; edits here are overwritten.\n"
    devices = [d for d in session.scalars(select(Device).order_by(Device.device_id)) if d.password_hash]
    codes: dict[int, str] = {
        gh_id: code for gh_id, code in session.execute(select(Greenhouse.id, Greenhouse.code))
    }
    device_acl = [header]
    for d in devices:
        device_acl.append(f"user {d.device_id}")
        if d.greenhouse_id in codes:
            device_acl.append(f"topic write {prefix}/{codes[d.greenhouse_id]}/{d.device_id}/#")
        device_acl += [
            f"topic write {tasmota_prefix}/{d.device_id}/#",
            f"topic read cmnd/{d.device_id}/#",
            "",
        ]
    users = list_service_users(session)
    service_acl = [header]
    for u in users:
        service_acl.append(f"user {u.username}")
        service_acl += [line.format(prefix=prefix, tele=tasmota_prefix) for line in ROLES[u.role][1]]
        service_acl.append("")
    return BrokerFiles(
        devices_passwd="".join(f"{d.device_id}:{d.password_hash}\n" for d in devices),
        devices_acl="\n".join(device_acl),
        services_passwd="".join(f"{u.username}:{u.password_hash}\n" for u in users),
        services_acl="\n".join(service_acl),
    )


def read_passwd(path: Path) -> dict[str, str]:
    """user -> hash of a Mosquitto password file (empty if there is none)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    entries = {}
    for line in text.splitlines():
        name, sep, hashed = line.strip().partition(":")
        if sep and name and not name.startswith("#"):
            entries[name] = hashed
    return entries


def write_broker_files(
    session: Session,
    directory: Path,
    *,
    prefix: str = "farm",
    tasmota_prefix: str = "tele",
    drop_unknown: bool = False,
    removed: frozenset[str] = frozenset(),
) -> list[Path]:
    """Write the four files into ``directory``, each replaced atomically (a broker reloading
    meanwhile reads the old or the new file, never half of one), keeping an existing file's
    owner and mode (Mosquitto must be able to read it) or else 0600.

    Refused (nothing written) if an existing password file has a user the database does not
    know, unless ``drop_unknown`` or it is one of ``removed`` (just removed on purpose): that
    user would be locked out."""
    files = render(session, prefix=prefix, tasmota_prefix=tasmota_prefix).by_name()
    lost: list[str] = []
    for name in ("devices.passwd", "services.passwd"):
        new = {line.partition(":")[0] for line in files[name].splitlines()}
        lost += [
            f"{user} ({name})"
            for user in read_passwd(directory / name)
            if user not in new and user not in removed
        ]
    if lost and not drop_unknown:
        raise BrokerAccessError(
            N_(
                "not written: %(users)s would lose their login; add them with `flask iot broker user "
                "import`, or drop them with --drop-unknown"
            ),
            users=", ".join(sorted(lost))[:500],
        )
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = directory / name
        _atomic_write(path, text)
        written.append(path)
    return written


def _atomic_write(path: Path, text: str) -> None:
    try:
        st: os.stat_result | None = path.stat()
    except FileNotFoundError:
        st = None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, (st.st_mode & 0o777) if st else 0o600)
        if st is not None and os.geteuid() == 0:
            os.chown(tmp, st.st_uid, st.st_gid)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
