"""Production records (生产记录) of a crop cycle and the pre-harvest interval (安全间隔期).

What a cooperative must keep (农产品质量安全法 2022, 第二十七条): the inputs used (name,
source, method, dose, dates of use and stopping), the pests and diseases and how they were
controlled, and the harvest dates. Here:

* ``record_input``: a fertiliser, pesticide or other input applied by hand, validated (a
  pesticide's 农药登记证号 by its published format, its interval 0–365 days, a dose that is
  positive and not absurd, a date neither in the future, nor before planting, nor after the
  cycle ended, a purchase not after the use);
* ``record_pest_control``: what was observed and what was done (chemical control names the
  pesticide input it used);
* ``harvest_problem`` / ``check_harvest``: THE RULE. A harvest on a day inside the
  pre-harvest interval of a pesticide applied on the cycle (applied on or before that day,
  first allowed day after it) is refused, naming the pesticide and the first allowed day.
  ``shop.trace.lots.create_harvest_lot`` (every path that records a harvest lot: the
  harvest form, the shop's "receive stock", the demo) asks it; an official (role official
  or admin) may override with a reason, stored on the lot. Packs and gift boxes are made
  from harvest lots, so the rule binds at harvest. The same rule binds a pesticide recorded
  (or backdated) after a harvest that it would put inside its interval;
* ``interval_problem``: whether a lot (or any harvest lot it was made from) was harvested
  inside an interval, for the certificate (承诺达标合格证) rule;
* ``production_record``: the cycle's record for the pages, with the fertigation runs of the
  greenhouse (derived from ``iot``, never copied) and their units.

Plain services over a SQLAlchemy session: they flush but never commit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core import audit, clock, parse
from core.db import utcnow
from core.errors import N_
from core.models import User
from core.text import fold_width
from iot.models import IrrigationEvent
from shop.trace.ancestry import source_lots
from shop.trace.errors import LotError
from shop.trace.events import plausible_day
from shop.trace.models import CropCycle, HarvestLot, InputUse, PestControl

INPUT_KINDS = ("fertiliser", "pesticide", "other")
PESTICIDE_CLASSES = ("fungicide", "insecticide", "herbicide", "acaricide", "regulator", "other")
# 施用方法
METHODS = ("spray", "drench", "drip", "broadcast", "hole", "furrow", "soil", "seed", "fumigate", "other")
AMOUNT_UNITS = ("kg", "g", "L", "mL")
RATE_UNITS = ("g/mu", "kg/mu", "mL/mu", "L/mu", "dilution")
CONTROLS = ("chemical", "physical", "biological", "agronomic", "none")
OVERRIDE_ROLES = ("admin", "official")
MAX_INTERVAL_DAYS = 365
# the largest dose a form takes: per 亩 (g, mL) or a dilution (倍)
MAX_RATE = {
    "g/mu": Decimal(100000),
    "kg/mu": Decimal(10000),
    "mL/mu": Decimal(100000),
    "L/mu": Decimal(10000),
    "dilution": Decimal(100000),
}
MAX_AMOUNT_KG = Decimal(100000)  # one application of a product on one cycle: 100 t or 100 m³

# 农药登记证号 (published by 农业农村部 农药检定所, ICAMA; see docs/traceability.md):
#   PD + 4-digit year + 4-digit number (农田用 正式登记, e.g. PD20080001), on some an F at the
#   end (PD20152400F; the source lists F numbers for 分装 products); WP the same for 卫生用农药;
#   older numbers PD/WP + 2-digit year + 3 or 4 digits, with a "-N" suffix on some (PD85105-3);
#   LS / WL + year + number: 临时登记 (temporary registration, granted until the 2017
#   农药管理条例 abolished it, e.g. LS20071573, LS96030).
REGISTRATION_RE = re.compile(
    r"(?P<prefix>PD|WP)(?:(?:19|20)\d{2}\d{4}F?|\d{5,6}(?:-\d{1,3})?)|(?P<temp>LS|WL)(?:(?:19|20)\d{2}\d{3,4}|\d{5,6})"
)
# 肥料登记证号, optional for fertilisers: e.g. 农肥(2019)准字12345号, 鲁农肥(2020)准字1234号,
# 微生物肥(2021)准字(8888)号; stored as typed, only its length is checked.


class IntervalError(LotError):
    """A harvest inside a pesticide's pre-harvest interval; ``first_allowed``: the first day
    the cycle may be harvested, ``overridden``: an official overrode it (reason on the lot)."""

    field = "harvested_on"
    first_allowed: date | None = None
    overridden: bool = False


# --- reading what people type ---------------------------------------------------------------


def _text(value: Any, limit: int) -> str | None:
    """Free text as typed (Chinese punctuation kept), runs of whitespace made one space."""
    text = " ".join(str(value or "").split())
    return text[:limit] if text else None


def _field_error(template: str, field_name: str, **params: Any) -> LotError:
    error = LotError(template, **params)
    error.field = field_name
    return error


def normalize_registration(value: Any) -> str | None:
    """A registration number as printed on a label: full-width folded, spaces and dots gone,
    upper case (``pd 2008 0001`` → ``PD20080001``); None when empty."""
    text = re.sub(r"[\s.·]", "", fold_width(str(value or ""))).upper()
    return text or None


def pesticide_registration_problem(number: str | None) -> str | None:
    """Why ``number`` is not a 农药登记证号 (an ``N_`` template), or None when it is one."""
    if not number:
        return N_("a pesticide needs its registration number (农药登记证号), e.g. PD20080001")
    if REGISTRATION_RE.fullmatch(number) is None:
        return N_(
            "%(number)s is not a pesticide registration number: PD or WP, the year and four digits "
            "(PD20080001, PD20152400F), or LS/WL for a temporary registration"
        )
    return None


def is_temporary_registration(number: str | None) -> bool:
    return bool(number) and str(number)[:2] in ("LS", "WL")


def _actor(session: Session, user_id: int | None) -> User | None:
    if user_id is None:
        return None
    user = session.get(User, user_id)
    if user is None:
        raise LotError(N_("unknown user"))
    return user


def _lock_cycle(session: Session, cycle: CropCycle) -> None:
    """Serialise the interval rule per cycle, so a harvest and a pesticide recorded at once
    see each other: a no-op UPDATE of the cycle's row before reading what the rule reads
    takes the row's lock on PostgreSQL (held to the commit) and the database's write lock
    on SQLite (its reads before the first write see what was committed meanwhile)."""
    session.execute(
        update(CropCycle)
        .where(CropCycle.id == cycle.id)
        .values(note=CropCycle.note)
        .execution_options(synchronize_session=False)
    )


MIN_REASON_CHARACTERS = 4  # letters, digits or hanzi in an override's reason ("暴雨抢收" is four)


def _override(
    session: Session, actor: User | None, reason: Any, problem: IntervalError
) -> tuple[User, str] | None:
    """The official and reason that let ``problem`` pass, or None when no override was asked."""
    text = " ".join(str(reason or "").split())
    if not text:  # no override asked (a blank reason is none): the refusal stands
        return None
    if actor is None or actor.role not in OVERRIDE_ROLES:
        raise _field_error(N_("only an official may override the pre-harvest interval"), "override_reason")
    if sum(ch.isalnum() for ch in text) < MIN_REASON_CHARACTERS:  # "..", "ok": no reason (review)
        raise _field_error(
            N_("say why the pre-harvest interval is overridden (at least a few words)"), "override_reason"
        )
    return actor, text[:500]


# --- the rule -----------------------------------------------------------------------------------


def _pesticides(session: Session, cycle_id: int) -> list[InputUse]:
    return list(
        session.scalars(
            select(InputUse)
            .where(
                InputUse.crop_cycle_id == cycle_id,
                InputUse.kind == "pesticide",
                InputUse.interval_days > 0,
            )
            .order_by(InputUse.applied_on, InputUse.id)
        )
    )


def _inside(use: InputUse, day: date) -> bool:
    first = use.first_harvest_on
    return first is not None and use.applied_on <= day < first


def _interval_error(use: InputUse, day: date) -> IntervalError:
    first = use.first_harvest_on
    error = IntervalError(
        N_(
            "%(day)s is inside the %(days)d-day pre-harvest interval of %(pesticide)s (applied "
            "%(applied)s): the first day this crop may be harvested is %(first)s"
        ),
        day=day.isoformat(),
        days=use.interval_days or 0,
        pesticide=use.product,
        applied=use.applied_on.isoformat(),
        first=first.isoformat() if first else "—",
    )
    error.first_allowed = first
    return error


def harvest_problem(session: Session, cycle: CropCycle, day: date) -> IntervalError | None:
    """Why ``cycle`` may not be harvested on ``day``: the pesticide whose interval lasts
    longest past ``day`` (applied on or before it), or None when every interval has passed."""
    inside = [u for u in _pesticides(session, cycle.id) if _inside(u, day)]
    if not inside:
        return None
    latest = max(inside, key=lambda u: (u.first_harvest_on or day, u.id))
    return _interval_error(latest, day)


def check_harvest(
    session: Session,
    cycle: CropCycle | None,
    day: date,
    *,
    actor: User | None,
    override_reason: Any = None,
) -> tuple[User, str] | None:
    """THE RULE at harvest (``lots.create_harvest_lot`` calls it): refuse a harvest of
    ``cycle`` on ``day`` inside a pesticide's interval, unless an official overrides it with
    a reason. Returns (official, reason) of an override that was needed, else None."""
    if cycle is None:
        return None
    _lock_cycle(session, cycle)
    problem = harvest_problem(session, cycle, day)
    if problem is None:
        return None
    granted = _override(session, actor, override_reason, problem)
    if granted is None:
        raise problem
    return granted


def mark_override(lot: HarvestLot, granted: tuple[User, str] | None) -> None:
    """Store an official's override of the interval on the lot (who, when, why)."""
    if granted is None:
        return
    official, reason = granted
    lot.interval_override_by_id = official.id
    lot.interval_override_at = utcnow()
    lot.interval_override_reason = reason


def interval_problem(session: Session, lot: HarvestLot, day: date | None = None) -> IntervalError | None:
    """Whether ``lot`` (or any harvest lot it was made from, through ``ancestry``: a pack's
    lot, every lot in a gift box) was harvested inside the pre-harvest interval of a
    pesticide applied on its crop cycle, overridden or not: an ``IntervalError`` naming
    that lot, the pesticide and the first allowed day (``overridden`` True when an
    official let the harvest through), or None.

    ``day`` (default today) stands for the harvest day of a source lot without one, so such
    a lot counts as inside while ``day`` is. The certificate rule refuses a certificate for
    a lot with a problem. Read-only."""
    day = day or clock.today()
    for source in source_lots(session, lot):
        if source.crop_cycle_id is None:
            continue
        harvested = source.harvested_on or day
        inside = [u for u in _pesticides(session, source.crop_cycle_id) if _inside(u, harvested)]
        if not inside:
            continue
        use = max(inside, key=lambda u: (u.first_harvest_on or harvested, u.id))
        overridden = source.interval_override_reason is not None
        error = IntervalError(
            N_(
                "lot %(lot)s was harvested on %(day)s, inside the %(days)d-day pre-harvest interval "
                "of %(pesticide)s (applied %(applied)s; first allowed day %(first)s)"
            )
            if not overridden
            else N_(
                "lot %(lot)s was harvested on %(day)s, inside the %(days)d-day pre-harvest interval "
                "of %(pesticide)s (applied %(applied)s; first allowed day %(first)s), on an "
                "official's override: %(reason)s"
            ),
            lot=source.lot_number,
            day=harvested.isoformat(),
            days=use.interval_days or 0,
            pesticide=use.product,
            applied=use.applied_on.isoformat(),
            first=use.first_harvest_on.isoformat() if use.first_harvest_on else "—",
            reason=source.interval_override_reason or "",
        )
        error.first_allowed = use.first_harvest_on
        error.overridden = overridden
        return error
    return None


# --- recording ----------------------------------------------------------------------------------


def _check_day(cycle: CropCycle, day: date, field_name: str) -> date:
    try:
        plausible_day(day)
    except LotError as exc:
        exc.field = field_name
        raise
    if day > clock.today():
        raise _field_error(
            N_("%(day)s is in the future: record an input once it is used"), field_name, day=day.isoformat()
        )
    if day < cycle.planted_on:
        raise _field_error(N_("The date is before planting."), field_name)
    if cycle.ended_on is not None and day > cycle.ended_on:
        raise _field_error(
            N_("this crop cycle ended on %(ended)s: nothing can be applied after it"),
            field_name,
            ended=cycle.ended_on.isoformat(),
        )
    return day


def _decimal(value: Any, field_name: str, *, required: bool) -> Decimal | None:
    try:
        read = parse.decimal_number(value, hi=Decimal("1e15"))
    except parse.InputError as exc:
        raise _field_error(exc.template, field_name, **exc.params) from exc
    if read is None:
        if required:
            raise _field_error(N_("the amount is not a number"), field_name)
        return None
    read = read.quantize(Decimal("0.001"))
    if read <= 0:
        raise _field_error(N_("the amount must be more than zero"), field_name)
    return read


def _choice(value: Any, options: tuple[str, ...], field_name: str, *, required: bool) -> str | None:
    text = str(value or "").strip()
    if not text and not required:
        return None
    if text not in options:
        raise _field_error(N_("Choose one of the options."), field_name)
    return text


def record_input(
    session: Session,
    cycle: CropCycle,
    *,
    kind: Any,
    product: Any,
    amount: Any,
    unit: Any,
    applied_on: date,
    pesticide_class: Any = None,
    registration_no: Any = None,
    supplier: Any = None,
    purchased_on: date | None = None,
    purchase_ref: Any = None,
    method: Any = None,
    rate: Any = None,
    rate_unit: Any = None,
    target: Any = None,
    interval_days: Any = None,
    note: Any = None,
    user_id: int | None = None,
    override_reason: Any = None,
) -> InputUse:
    """Record an input applied on ``cycle`` (see the module's rules); refusals name their
    form field (``LotError.field``). A pesticide that would put a harvest already recorded
    on the cycle inside its interval is refused unless an official overrides it with a
    reason (kept on the input)."""
    kind = _choice(kind, INPUT_KINDS, "kind", required=True)
    name = _text(product, 120)
    if not name:
        raise _field_error(N_("input product is required"), "product")
    applied_on = _check_day(cycle, applied_on, "applied_on")
    qty = _decimal(amount, "amount", required=True)
    assert qty is not None
    unit = _choice(unit or "kg", AMOUNT_UNITS, "unit", required=True)
    per_kg = {"kg": Decimal(1), "g": Decimal("0.001"), "L": Decimal(1), "mL": Decimal("0.001")}[unit or "kg"]
    if qty * per_kg > MAX_AMOUNT_KG:
        raise _field_error(N_("%(value)s is too large"), "amount", value=f"{qty.normalize():f}")
    rate_value = _decimal(rate, "rate", required=False)
    rate_unit = _choice(rate_unit, RATE_UNITS, "rate_unit", required=rate_value is not None)
    if rate_value is not None and rate_unit is not None and rate_value > MAX_RATE[rate_unit]:
        raise _field_error(N_("%(value)s is too large"), "rate", value=f"{rate_value.normalize():f}")
    if rate_unit == "dilution" and rate_value is not None and rate_value < 1:
        raise _field_error(N_("a dilution is a number of times (倍), at least 1"), "rate")
    method = _choice(method, METHODS, "method", required=kind == "pesticide")
    registration = normalize_registration(registration_no)
    days: int | None = None
    if kind == "pesticide":
        problem = pesticide_registration_problem(registration)
        if problem is not None:
            raise _field_error(problem, "registration_no", number=registration or "")
        pesticide_class = _choice(pesticide_class, PESTICIDE_CLASSES, "pesticide_class", required=True)
        try:
            days = parse.whole_number(interval_days, lo=0, hi=MAX_INTERVAL_DAYS)
        except parse.InputError:
            raise _field_error(
                N_(
                    "the pre-harvest interval (安全间隔期) is a whole number of days from 0 to %(max)d, "
                    "as the label says"
                ),
                "interval_days",
                max=MAX_INTERVAL_DAYS,
            ) from None
        if rate_value is None:
            raise _field_error(N_("give the dose per mu or the dilution as used"), "rate")
        if not _text(target, 120):
            raise _field_error(N_("name the pest or disease it controls (防治对象)"), "target")
    else:
        pesticide_class = None
        if registration is not None and len(registration) > 30:
            raise _field_error(N_("a registration number has at most 30 characters"), "registration_no")
        if str(interval_days or "").strip():
            raise _field_error(N_("only a pesticide has a pre-harvest interval"), "interval_days")
    if purchased_on is not None:
        try:
            plausible_day(purchased_on)
        except LotError as exc:
            exc.field = "purchased_on"
            raise
        if purchased_on > applied_on:
            raise _field_error(N_("it was bought after it was used: check the dates"), "purchased_on")
    actor = _actor(session, user_id)
    row = InputUse(
        crop_cycle_id=cycle.id,
        kind=kind,
        pesticide_class=pesticide_class,
        product=name,
        registration_no=registration,
        supplier=_text(supplier, 120),
        purchased_on=purchased_on,
        purchase_ref=_text(purchase_ref, 60),
        method=method,
        amount=qty,
        unit=unit,
        rate=rate_value,
        rate_unit=rate_unit if rate_value is not None else None,
        target=_text(target, 120),
        interval_days=days,
        applied_on=applied_on,
        source="manual",
        note=_text(note, 1000),
        recorded_by_id=user_id,
    )
    if kind == "pesticide" and days:
        _lock_cycle(session, cycle)
        harvested = [
            lot
            for lot in session.scalars(
                select(HarvestLot)
                .where(HarvestLot.crop_cycle_id == cycle.id, HarvestLot.kind == "harvest")
                .order_by(HarvestLot.harvested_on, HarvestLot.id)
            )
            if lot.harvested_on is not None and _inside(row, lot.harvested_on)
        ]
        if harvested:
            first = harvested[0]
            problem_error = IntervalError(
                N_(
                    "lot %(lot)s was harvested on %(day)s: that is inside the %(days)d-day pre-harvest "
                    "interval of a pesticide applied %(applied)s (first allowed day %(first)s)"
                ),
                lot=first.lot_number,
                day=(first.harvested_on or applied_on).isoformat(),
                days=days,
                applied=applied_on.isoformat(),
                first=(applied_on + timedelta(days=days)).isoformat(),
            )
            problem_error.field = "applied_on"
            granted = _override(session, actor, override_reason, problem_error)
            if granted is None:
                raise problem_error
            row.override_by_id, row.override_reason = granted[0].id, granted[1]
    session.add(row)
    session.flush()
    audit.record(
        session,
        "crop_cycle.input",
        cycle,
        user_id=user_id,
        details={
            "input_id": row.id,
            "kind": kind,
            "product": name,
            "registration_no": registration,
            "applied_on": applied_on.isoformat(),
            "amount": f"{qty.normalize():f} {unit}",
            "interval_days": days,
            "override": row.override_reason,
        },
    )
    return row


def record_pest_control(
    session: Session,
    cycle: CropCycle,
    *,
    observed_on: date,
    observation: Any,
    control: Any,
    measure: Any = None,
    input_use_id: int | None = None,
    user_id: int | None = None,
) -> PestControl:
    """Record a pest or disease seen on ``cycle`` and what was done about it. Chemical
    control names a pesticide already recorded on this cycle (on or after the day it was
    observed); other controls say what was done (``measure``)."""
    observed_on = _check_day(cycle, observed_on, "observed_on")
    text = _text(observation, 1000)
    if not text:
        raise _field_error(N_("say what was observed"), "observation")
    control = _choice(control, CONTROLS, "control", required=True)
    measure_text = _text(measure, 1000)
    use = None
    if control == "chemical":
        use = session.get(InputUse, input_use_id) if input_use_id else None
        if use is None or use.crop_cycle_id != cycle.id or use.kind != "pesticide":
            raise _field_error(
                N_("chemical control: choose the pesticide applied (record it as an input first)"),
                "input_use_id",
            )
        if use.applied_on < observed_on:
            raise _field_error(
                N_("the pesticide chosen was applied before this was observed"), "input_use_id"
            )
    elif input_use_id:
        raise _field_error(N_("only chemical control uses a pesticide"), "input_use_id")
    elif control != "none" and not measure_text:
        raise _field_error(
            N_("say what was done, e.g. yellow sticky traps or removing diseased leaves"), "measure"
        )
    _actor(session, user_id)
    row = PestControl(
        crop_cycle_id=cycle.id,
        observed_on=observed_on,
        observation=text,
        control=control,
        measure=measure_text,
        input_use_id=use.id if use is not None else None,
        recorded_by_id=user_id,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        "crop_cycle.pest_control",
        cycle,
        user_id=user_id,
        details={"id": row.id, "control": control, "input_id": row.input_use_id},
    )
    return row


# --- the record, for the pages ------------------------------------------------------------------

# what a controller's fertigation amounts are: the stock solution its dosing channels meter
FERTIGATION_UNIT = "L"


@dataclass
class FertigationTotal:
    tank: str
    amount: float
    unit: str = FERTIGATION_UNIT


@dataclass
class Fertigation:
    """The greenhouse controller's fertigation runs over a cycle (derived from ``iot``)."""

    runs: int = 0
    first_on: date | None = None
    last_on: date | None = None
    water_l: float = 0.0
    tanks: list[FertigationTotal] = field(default_factory=list)
    mean_ec: float | None = None  # mS/cm of the nutrient solution, water-weighted
    mean_ph: float | None = None


@dataclass(frozen=True)
class InputRow:
    """One input of a production record, as plain data (the trace page's cache keeps it)."""

    id: int
    kind: str
    pesticide_class: str | None
    product: str
    registration_no: str | None
    supplier: str | None
    purchased_on: date | None
    purchase_ref: str | None
    method: str | None
    amount: Decimal
    unit: str
    rate: Decimal | None
    rate_unit: str | None
    target: str | None
    interval_days: int | None
    applied_on: date
    first_harvest_on: date | None
    note: str | None
    recorded_by: str | None
    recorded_at: datetime
    override_by: str | None
    override_reason: str | None

    @property
    def temporary_registration(self) -> bool:
        return is_temporary_registration(self.registration_no)


@dataclass(frozen=True)
class PestRow:
    id: int
    observed_on: date
    observation: str
    control: str
    measure: str | None
    pesticide: str | None  # the product of the pesticide input it used (chemical control)
    pesticide_applied_on: date | None
    recorded_by: str | None
    recorded_at: datetime


@dataclass
class ProductionRecord:
    """A crop cycle's production record as the pages show it (plain data, cacheable)."""

    cycle_id: int
    inputs: list[InputRow]
    pest_controls: list[PestRow]
    fertigation: Fertigation
    # an official's override of the interval on the harvest this record is shown for
    override: tuple[str, datetime, str] | None = None

    @property
    def pesticides(self) -> list[InputRow]:
        return [u for u in self.inputs if u.kind == "pesticide"]

    @property
    def is_empty(self) -> bool:
        return not self.inputs and not self.pest_controls and not self.fertigation.runs


def fertigation(session: Session, cycle: CropCycle, until: date | None = None) -> Fertigation:
    """The fertigation runs in the cycle's greenhouse from planting to ``until`` (the harvest
    day; default the cycle's end or today): counted, with water (L), each tank's stock
    solution (L, as the controller meters it), and the solution's EC (mS/cm) and pH."""
    last = until or cycle.ended_on or clock.today()
    start = clock.day_start_ts(cycle.planted_on)
    end = clock.day_start_ts(last + timedelta(days=1))
    out = Fertigation()
    tanks: dict[str, float] = {}
    ec: list[tuple[float, float]] = []
    ph: list[tuple[float, float]] = []
    for ev in session.scalars(
        select(IrrigationEvent)
        .where(
            IrrigationEvent.greenhouse_id == cycle.greenhouse_id,
            IrrigationEvent.started_at >= start,
            IrrigationEvent.started_at < end,
        )
        .order_by(IrrigationEvent.started_at)
    ):
        amounts = {k: float(v) for k, v in (ev.fertilizer or {}).items() if isinstance(v, int | float)}
        if not any(v > 0 for v in amounts.values()):
            continue  # water only: an irrigation, not a fertigation
        day = clock.local_date(ev.started_at or start)
        out.runs += 1
        out.first_on = out.first_on or day
        out.last_on = day
        out.water_l += ev.water_l or 0.0
        for tank, amount in amounts.items():
            tanks[tank] = tanks.get(tank, 0.0) + amount
        if ev.ec is not None:
            ec.append((ev.ec, ev.water_l or 1.0))
        if ev.ph is not None:
            ph.append((ev.ph, ev.water_l or 1.0))
    out.tanks = [FertigationTotal(tank, round(amount, 2)) for tank, amount in sorted(tanks.items())]
    if ec:
        out.mean_ec = sum(v * w for v, w in ec) / sum(w for _, w in ec)
    if ph:
        out.mean_ph = sum(v * w for v, w in ph) / sum(w for _, w in ph)
    return out


def production_record(
    session: Session, cycle: CropCycle, until: date | None = None, *, lot: HarvestLot | None = None
) -> ProductionRecord:
    """Inputs and pest control records of ``cycle`` up to ``until`` (a harvest day; None: all),
    its greenhouse's fertigation, and the interval override on ``lot`` (a harvest of it)."""
    inputs = [u for u in cycle.inputs if until is None or u.applied_on <= until]
    pests = [p for p in cycle.pest_controls if until is None or p.observed_on <= until]
    ids = {u.recorded_by_id for u in inputs} | {p.recorded_by_id for p in pests}
    ids |= {u.override_by_id for u in inputs}
    names = {
        u.id: u.display_name or u.username
        for u in session.scalars(select(User).where(User.id.in_([i for i in ids if i is not None])))
    }

    def name(user_id: int | None) -> str | None:
        return names.get(user_id) if user_id is not None else None

    rows = [
        InputRow(
            id=u.id,
            kind=u.kind,
            pesticide_class=u.pesticide_class,
            product=u.product,
            registration_no=u.registration_no,
            supplier=u.supplier,
            purchased_on=u.purchased_on,
            purchase_ref=u.purchase_ref,
            method=u.method,
            amount=u.amount,
            unit=u.unit,
            rate=u.rate,
            rate_unit=u.rate_unit,
            target=u.target,
            interval_days=u.interval_days,
            applied_on=u.applied_on,
            first_harvest_on=u.first_harvest_on,
            note=u.note,
            recorded_by=name(u.recorded_by_id),
            recorded_at=u.created_at,
            override_by=name(u.override_by_id),
            override_reason=u.override_reason,
        )
        for u in inputs
    ]
    pest_rows = [
        PestRow(
            id=p.id,
            observed_on=p.observed_on,
            observation=p.observation,
            control=p.control,
            measure=p.measure,
            pesticide=p.input_use.product if p.input_use is not None else None,
            pesticide_applied_on=p.input_use.applied_on if p.input_use is not None else None,
            recorded_by=name(p.recorded_by_id),
            recorded_at=p.created_at,
        )
        for p in pests
    ]
    return ProductionRecord(
        cycle.id,
        rows,
        pest_rows,
        fertigation(session, cycle, until),
        override_of(session, lot) if lot is not None else None,
    )


def override_of(session: Session, lot: HarvestLot) -> tuple[str, datetime, str] | None:
    """(official's name, when, reason) of the interval override on ``lot``, or None."""
    if lot.interval_override_reason is None or lot.interval_override_at is None:
        return None
    user = session.get(User, lot.interval_override_by_id) if lot.interval_override_by_id else None
    name = (user.display_name or user.username) if user is not None else "—"
    return name, lot.interval_override_at, lot.interval_override_reason
