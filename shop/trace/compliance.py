"""承诺达标合格证: commitment certificates of compliance for lots, packs and gift boxes.

《农产品质量安全承诺达标合格证管理办法》(农业农村部令2025年第4号, in force 2026-02-01;
see docs/traceability.md): a producer issues one with each batch it sells, naming the
product, its quantity, the producer and its phone, 产地, the issue date, the commitments
and their basis. Not to be confused with an inspection's uploaded lab report.

``issue_certificate`` is the one way a certificate is made (web and CLI); it never commits.
Its refusals are a list of checks (``ISSUE_CHECKS``), each ``check(ctx) -> DomainError | None``,
one entry each: a recalled lot, a failed inspection, a harvest inside a pesticide's
pre-harvest interval (``production.interval_problem``, even when an official overrode it),
check-in, the basis and the quantity. ``bases_for`` says which
bases the lot's recorded inspections support (what the form offers). ``register`` searches
the issue register.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import audit, clock
from core.errors import N_, DomainError
from iot import crops
from shop.trace import producer as producers
from shop.trace import production
from shop.trace.ancestry import ancestry
from shop.trace.inspections import inspections_for
from shop.trace.models import COMPLIANCE_BASES, ComplianceCertificate, HarvestLot, Inspection

STAFF = ("admin", "official")
# The commitment items the 办法 asks for, printed on every certificate (in Chinese: it is a
# Chinese legal document whatever the issuer's interface language).
COMMITMENTS = (
    "不使用禁用农药兽药、停用兽药和非法添加物",
    "常规农药兽药残留不超标",
    "对承诺的真实性负责",
)
BASIS_LABELS = {  # printed in Chinese, in the template's order
    "commissioned_test": "委托检测",
    "self_test": "自我检测",
    "internal_control": "内部质量控制",
    "self_commitment": "自我承诺",
}
SELF_TEST_KINDS = ("self_test", "rapid_test")  # an Inspection.kind that is the producer's own test
SELF_TEST_MARK = "自检"  # ... or a lab name saying so (合作社自检室)
SERIAL_PREFIX = "HGZ"
ISSUE_ATTEMPTS = 8  # a serial taken by a concurrent issue is retried with the next number
# 1 kg = 2 jin: a certificate may state a lot in jin as kg and back; other units as they are.
CONVERSIONS = {("jin", "kg"): Decimal("0.5"), ("kg", "jin"): Decimal("2")}


class CertificateError(DomainError):
    """A certificate was refused; nothing was written. ``field``: the form field it is about."""

    def __init__(self, template: str, *, field: str | None = None, **params: Any) -> None:
        super().__init__(template, **params)
        self.field = field


@dataclass
class IssueContext:
    """What the checks see: the lot, who issues, the asked quantity (in the lot's unit) and basis."""

    session: Session
    lot: HarvestLot
    user: Any
    issuer: str  # cooperative | household
    quantity: Decimal
    unit: str
    basis: str
    day: date
    inspections: list[Inspection] = field(default_factory=list)
    lot_quantity: Decimal = Decimal(0)  # ``quantity`` in the lot's unit
    earlier: list[ComplianceCertificate] = field(default_factory=list)  # the lot's, newest first
    user_id: int | None = None


def is_self_test(inspection: Inspection) -> bool:
    return inspection.kind in SELF_TEST_KINDS or SELF_TEST_MARK in (inspection.lab or "")


def bases_for(inspections: list[Inspection]) -> tuple[str, ...]:
    """The bases the recorded inspections support (none at all if any failed).

    委托检测 needs a passing test by a lab (an inspection that is not the producer's own);
    自我检测 a passing test of the producer's own; 内部质量控制 and 自我承诺 are always open
    to a lot without a failed test (the 办法 lets a producer commit on its quality control)."""
    if any(not i.passed for i in inspections):
        return ()
    passed = [i for i in inspections if i.passed]
    found = []
    if any(not is_self_test(i) for i in passed):
        found.append("commissioned_test")
    if any(is_self_test(i) for i in passed):
        found.append("self_test")
    return (*found, "internal_control", "self_commitment")


def lot_household_id(lot: HarvestLot) -> int | None:
    if lot.household_id is not None:
        return lot.household_id
    return lot.crop_cycle.household_id if lot.crop_cycle is not None else None


def issuer_of(user: Any, lot: HarvestLot) -> str | None:
    """``"cooperative"`` for staff, ``"household"`` for a farmer of the lot's household, else None."""
    if user is None or not getattr(user, "active", False):
        return None
    if user.role in STAFF:
        return "cooperative"
    household = getattr(user, "household_id", None)
    if user.role == "farmer" and household is not None and household == lot_household_id(lot):
        return "household"
    return None


def product_name(lot: HarvestLot) -> str:
    """The product's Chinese name (the crop's, for a lot sold as no product)."""
    if lot.product is not None:
        return lot.product.name_zh or lot.product.name_en
    crop = lot.crop_cycle.crop if lot.crop_cycle is not None else None
    names = [n for n in crops.get(crop).names if any("\u4e00" <= ch <= "\u9fff" for ch in n)]
    return names[0] if names else (crop or lot.lot_number)


# --- the checks -------------------------------------------------------------------------


def _recalled(ctx: IssueContext) -> DomainError | None:
    if ctx.lot.recalled_at is not None:
        return CertificateError(
            N_("lot %(lot)s is recalled: no certificate can be issued"), lot=ctx.lot.lot_number
        )
    for relative in ancestry(ctx.session, ctx.lot):
        if relative.lot.recalled_at is not None:
            return CertificateError(
                N_("lot %(lot)s is made from recalled lot %(source)s: no certificate can be issued"),
                lot=ctx.lot.lot_number,
                source=relative.lot.lot_number,
            )
    return None


def _checked_in(ctx: IssueContext) -> DomainError | None:
    # The cooperative answers for what it accepted at the sales centre (入库验收); a household
    # issues for its own delivery, which the sales centre then checks in (收购 collects it).
    if ctx.issuer == "cooperative" and ctx.lot.checked_in_at is None:
        return CertificateError(
            N_("lot %(lot)s is not checked in yet: the cooperative certifies only what it accepted"),
            lot=ctx.lot.lot_number,
        )
    return None


def _failed_inspection(ctx: IssueContext) -> DomainError | None:
    failed = next((i for i in ctx.inspections if not i.passed), None)
    if failed is not None:
        return CertificateError(
            N_("lot %(lot)s failed an inspection (%(lab)s, %(day)s): no certificate can be issued"),
            lot=ctx.lot.lot_number,
            lab=failed.lab,
            day=failed.tested_on.isoformat(),
        )
    return None


def _basis(ctx: IssueContext) -> DomainError | None:
    if ctx.basis not in COMPLIANCE_BASES:
        return CertificateError(N_("choose the basis of the commitment"), field="basis")
    if ctx.basis not in bases_for(ctx.inspections):
        if ctx.basis == "commissioned_test":
            return CertificateError(
                N_("委托检测 needs a passing test of this lot by a laboratory: none is recorded"),
                field="basis",
            )
        return CertificateError(
            N_("自我检测 needs a passing self-test of this lot: none is recorded"), field="basis"
        )
    return None


def _quantity(ctx: IssueContext) -> DomainError | None:
    if ctx.quantity <= 0:  # no quantity given and nothing left
        return CertificateError(
            N_("lot %(lot)s holds nothing any more"), field="quantity", lot=ctx.lot.lot_number
        )
    if ctx.lot_quantity > ctx.lot.remaining:
        return CertificateError(
            N_("at most %(max)s %(unit)s: that is what the lot still holds"),
            field="quantity",
            max=f"{ctx.lot.remaining.normalize():f}",
            unit=ctx.lot.unit,
        )
    # Together the lot's certificates never cover more than the lot ever held (a recount that
    # raised ``remaining`` does not raise it): a certificate vouches for produce that exists.
    certified = sum((_in_lot_unit(c, ctx.lot) for c in ctx.earlier), Decimal(0))
    if certified + ctx.lot_quantity > ctx.lot.quantity:
        left = max(ctx.lot.quantity - certified, Decimal(0))
        return CertificateError(
            N_(
                "lot %(lot)s held %(held)s %(unit)s and its certificates already cover %(certified)s: "
                "at most %(max)s %(unit)s more"
            ),
            field="quantity",
            lot=ctx.lot.lot_number,
            held=f"{ctx.lot.quantity.normalize():f}",
            certified=f"{certified.normalize():f}",
            max=f"{left.normalize():f}",
            unit=ctx.lot.unit,
        )
    return None


def _in_lot_unit(cert: ComplianceCertificate, lot: HarvestLot) -> Decimal:
    return cert.quantity * CONVERSIONS.get((cert.unit, lot.unit), Decimal(1))


REPEAT_SECONDS = 120  # the same certificate again this soon is a second click, not a second batch


def _repeated(ctx: IssueContext) -> DomainError | None:
    last = ctx.earlier[0] if ctx.earlier else None
    if (
        last is not None
        and last.issued_by_id == ctx.user_id
        and (last.quantity, last.unit, last.basis) == (ctx.quantity, ctx.unit, ctx.basis)
        and (clock.now() - last.issued_at).total_seconds() < REPEAT_SECONDS
    ):
        return CertificateError(
            N_("certificate %(serial)s for the same quantity was issued a moment ago: print that one"),
            serial=last.serial,
        )
    return None


Check = Callable[[IssueContext], DomainError | None]


# In order; the first refusal wins. The pre-harvest interval check goes here.
def _interval(ctx: IssueContext) -> DomainError | None:
    # 安全间隔期: a lot (or any lot it was made from) harvested inside a pesticide's interval,
    # even on an official's override, cannot carry the commitment 常规农药残留不超标.
    return production.interval_problem(ctx.session, ctx.lot, ctx.day)


ISSUE_CHECKS: list[Check] = [
    _recalled,
    _failed_inspection,
    _interval,
    _checked_in,
    _basis,
    _repeated,
    _quantity,
]


# --- issuing ----------------------------------------------------------------------------


def trace_url(lot: HarvestLot, base_url: str) -> str:
    """What a certificate's QR code holds: the lot's label URL (``gs1.label_url``), as its labels."""
    from shop.trace import gs1

    # The lot's Digital Link without its weight (AI 310n): a certificate for part of a lot
    # must not state the whole lot's weight in its QR (review); the lot is what it names.
    return gs1.label_url(base_url, lot).split("?", 1)[0]


def _parse_quantity(value: Any) -> Decimal:
    from shop.trace.quantity import parse_quantity

    try:
        return parse_quantity(value)
    except DomainError as exc:
        raise CertificateError(exc.template, field="quantity", **exc.params) from exc


def units_for(lot: HarvestLot) -> tuple[str, ...]:
    """The units a certificate of ``lot`` may state its quantity in: the lot's, and kg↔jin."""
    return (lot.unit, *(to for (frm, to) in CONVERSIONS if frm == lot.unit))


def _snapshot(
    session: Session, lot: HarvestLot, issuer: str, user: Any, *, quantity: Decimal, unit: str, basis: str
) -> dict[str, Any]:
    row = producers.get(session)
    household = lot.household or (lot.crop_cycle.household if lot.crop_cycle is not None else None)
    if issuer == "household" and household is not None:
        # a household issues in its own name, with its own phone; 产地 is the cooperative's village
        name, phone = household.head_name, household.phone or row.phone
        credit_code = platform_code = ""
    else:
        name, phone = row.name, row.phone
        credit_code, platform_code = row.credit_code, row.platform_code
    return {
        "product": product_name(lot),
        "quantity": f"{quantity.normalize():f}",
        "unit": unit,
        "producer": name,
        "phone": phone,
        "origin": producers.origin(row),
        "address": row.address,
        "credit_code": credit_code,
        "platform_code": platform_code,
        "cooperative": row.name,
        "lot_number": lot.lot_number,
        "code": lot.code,
        "commitments": list(COMMITMENTS),
        "basis": basis,
        "basis_label": BASIS_LABELS[basis],
        "issuer": issuer,
        "issued_by": getattr(user, "display_name", "") or getattr(user, "username", ""),
    }


def _next_number(session: Session, year: int) -> int:
    top = session.scalar(
        select(func.max(ComplianceCertificate.number)).where(ComplianceCertificate.year == year)
    )
    return (top or 0) + 1


def serial_for(year: int, number: int) -> str:
    return f"{SERIAL_PREFIX}{year}{number:06d}"


def issue_certificate(
    session: Session,
    lot: HarvestLot,
    *,
    quantity: Any = None,
    unit: str | None = None,
    basis: str | None = None,
    user_id: int | None,
    trace_url: str,
) -> ComplianceCertificate:
    """Issue a 承诺达标合格证 for ``lot`` (``quantity`` in ``unit``, default: all the lot still
    holds, in its unit) on ``basis`` (default: the first the records support); ``user_id``
    None is the command line's operator for the cooperative; ``trace_url`` is what its QR code holds
    (``gs1.label_url``). Refused with a ``CertificateError`` (see ``ISSUE_CHECKS``)."""
    from core.models import User

    user = session.get(User, user_id) if user_id is not None else None
    # no user: the server's operator on the command line, for the cooperative
    issuer = issuer_of(user, lot) if user_id is not None else "cooperative"
    if issuer is None:
        raise CertificateError(
            N_("only the cooperative's staff or the lot's own household can issue its certificate")
        )
    unit = (unit or "").strip() or lot.unit
    if unit not in units_for(lot):
        raise CertificateError(
            N_("the unit must be one of %(units)s"), field="unit", units=", ".join(units_for(lot))
        )
    # One issue at a time per lot (a row lock on PostgreSQL, the write lock on SQLite): two
    # clerks at once must see each other's certificates before the quantity check.
    session.execute(update(HarvestLot).where(HarvestLot.id == lot.id).values(quantity=HarvestLot.quantity))
    if quantity is None or (isinstance(quantity, str) and not quantity.strip()):
        amount = lot.remaining / CONVERSIONS.get((unit, lot.unit), Decimal(1))
        amount = max(amount.quantize(Decimal("0.001")), Decimal(0))  # 0: refused by _quantity
    else:
        amount = _parse_quantity(quantity)
    ctx = IssueContext(
        session=session,
        lot=lot,
        user=user,
        issuer=issuer,
        quantity=amount,
        unit=unit,
        basis=(basis or "").strip() or next(iter(bases_for(inspections_for(session, lot))), ""),
        day=clock.today(),
        inspections=inspections_for(session, lot),
        lot_quantity=amount * CONVERSIONS.get((unit, lot.unit), Decimal(1)),
        earlier=for_lot(session, lot),
        user_id=user_id,
    )
    for check in ISSUE_CHECKS:
        problem = check(ctx)
        if problem is not None:
            raise problem
    snapshot = _snapshot(session, lot, issuer, user, quantity=amount, unit=unit, basis=ctx.basis)
    snapshot["trace_url"] = trace_url
    snapshot["issued_on"] = ctx.day.isoformat()
    year = ctx.day.year
    for _attempt in range(ISSUE_ATTEMPTS):
        number = _next_number(session, year)
        cert = ComplianceCertificate(
            serial=serial_for(year, number),
            year=year,
            number=number,
            lot=lot,
            product_name=snapshot["product"],
            quantity=amount,
            unit=unit,
            basis=ctx.basis,
            issuer=issuer,
            producer_name=snapshot["producer"],
            issued_on=ctx.day,
            issued_at=clock.now(),
            issued_by_id=user_id,
            snapshot={**snapshot, "serial": serial_for(year, number)},
        )
        try:
            with session.begin_nested():  # a concurrent issue took this number: try the next
                session.add(cert)
                session.flush()
        except IntegrityError:
            continue
        break
    else:
        raise CertificateError(N_("could not allocate a serial number; try again"))
    audit.record(
        session,
        "shop.trace.certificate",
        cert,
        user_id=user_id,
        details={
            "serial": cert.serial,
            "lot": lot.lot_number,
            "quantity": snapshot["quantity"],
            "unit": unit,
        },
    )
    return cert


# --- reading ----------------------------------------------------------------------------


def by_serial(session: Session, serial: str) -> ComplianceCertificate | None:
    return session.scalar(select(ComplianceCertificate).where(ComplianceCertificate.serial == serial.strip()))


def for_lot(session: Session, lot: HarvestLot) -> list[ComplianceCertificate]:
    """Certificates of this lot, newest first."""
    return list(
        session.scalars(
            select(ComplianceCertificate)
            .where(ComplianceCertificate.lot_id == lot.id)
            .order_by(ComplianceCertificate.issued_at.desc(), ComplianceCertificate.id.desc())
        )
    )


def register(
    session: Session,
    *,
    serial: str = "",
    lot_number: str = "",
    product: str = "",
    start: date | None = None,
    end: date | None = None,
    limit: int | None = 500,
) -> list[ComplianceCertificate]:
    """The issue register, newest first, searched by serial, lot number, product and dates."""
    stmt: Select[Any] = select(ComplianceCertificate).join(HarvestLot, ComplianceCertificate.lot)
    if serial.strip():
        stmt = stmt.where(ComplianceCertificate.serial.contains(serial.strip().upper(), autoescape=True))
    if lot_number.strip():
        stmt = stmt.where(HarvestLot.lot_number.contains(lot_number.strip(), autoescape=True))
    if product.strip():
        stmt = stmt.where(ComplianceCertificate.product_name.contains(product.strip(), autoescape=True))
    if start is not None:
        stmt = stmt.where(ComplianceCertificate.issued_on >= start)
    if end is not None:
        stmt = stmt.where(ComplianceCertificate.issued_on <= end)
    stmt = stmt.order_by(ComplianceCertificate.issued_at.desc(), ComplianceCertificate.id.desc())
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


REGISTER_COLUMNS = (
    "serial",
    "issued_on",
    "lot_number",
    "product",
    "quantity",
    "unit",
    "basis",
    "producer",
    "issued_by",
    "status",
)
REGISTER_HEADINGS = (
    "编号",
    "开具日期",
    "批次号",
    "产品名称",
    "数量",
    "单位",
    "承诺依据",
    "生产者",
    "开具人",
    "状态",
)


def withdrawn_because(session: Session, cert: ComplianceCertificate) -> str | None:
    """Why a certificate no longer holds (作废), or None: ``"recalled"`` (its lot, or one it
    was made from: a recall reaches them all), or ``"interval"`` (a pesticide recorded later,
    even backdated, puts the harvest inside its pre-harvest interval, so 常规农药残留不超标 can
    no longer be promised; review)."""
    if cert.withdrawn:
        return "recalled"
    if production.interval_problem(session, cert.lot, cert.issued_on) is not None:
        return "interval"
    return None


# the register's status column
STATUS_CELLS = {"recalled": "已召回作废", "interval": "安全间隔期内采收，作废"}


def register_rows(session: Session, certificates: list[ComplianceCertificate]) -> list[list[Any]]:
    """The register as rows (Chinese headings ``REGISTER_HEADINGS``) for CSV and XLSX."""
    return [
        [
            c.serial,
            c.issued_on.isoformat(),
            c.lot.lot_number,
            c.product_name,
            float(c.quantity),
            c.unit,
            BASIS_LABELS.get(c.basis, c.basis),
            c.producer_name,
            c.snapshot.get("issued_by", ""),
            STATUS_CELLS.get(withdrawn_because(session, c) or "", "有效"),
        ]
        for c in certificates
    ]
