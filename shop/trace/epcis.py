"""EPCIS 2.0 export: a lot's events as a JSON-LD ``EPCISDocument``.

One identity per pack. Every lot, pack and gift box is named by what its label prints:
its GTIN with its own lot number (GS1 Digital Link ``/01/<GTIN>/10/<lot>``, written on the
canonical ``https://id.gs1.org`` domain), as a class-level quantity (``epcClass`` +
``quantity`` + ``uom``); a lot without a GTIN by the short URL its label prints instead.
No serials are invented, so there are no AggregationEvents. ``Exporter.class_gtin`` is the
one place the exporter asks ``shop.trace.gs1`` for a lot's GTIN.

Mapping (CBV 2.0 vocabulary):

* harvest → ObjectEvent ADD, bizStep ``commissioning``, with ILMD (harvest date, variety,
  greenhouse, household) at the greenhouse;
* growing conditions → ObjectEvent OBSERVE, bizStep ``sensor_reporting``, one
  ``sensorElement`` per metric whose ``sensorMetadata`` start/end are the first and last
  hour with data (not the cycle), and ``ty:coverage`` with days/hours with data out of the
  cycle's, and the gaps;
* inspection → ObjectEvent OBSERVE, bizStep ``inspecting``, disposition ``conformant`` /
  ``non_conformant``, measured substances as ``sensorReport`` (``chemicalSubstance``,
  ``value``, ``uom``), the certificate URL in ``certificationInfo``;
* a split into packs → ONE TransformationEvent (input: the parent lot's quantity, outputs:
  the packs), bizStep ``repackaging``; a gift box → ONE TransformationEvent (inputs: the lots,
  output: the box), bizStep ``assembling``;
* checked in at the sales centre (入库验收) → ObjectEvent OBSERVE, bizStep ``receiving``;
* sold / shipped / recalled → ObjectEvent OBSERVE (``retail_selling`` with the order in
  ``bizTransactionList`` / ``shipping`` / ``holding`` with disposition ``recalled``). No sale
  or shipment of a lot is exported at or after its ``recalled`` event.

``readPoint``/``bizLocation`` are the app's location pages (``/loc/greenhouse/<code>``,
``/loc/sales-centre``, served by ``shop.trace.location_views``). The header carries master
data: the locations, the producer (``shop.trace.producer``) and the lot classes. The
document covers the lot, everything it was made from and everything made from it. Sales
come from the shop's paid orders, handed in as ``sales_of`` (``ShopPort``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import clock
from shop.trace import locations
from shop.trace import producer as producer_rows
from shop.trace.ancestry import ancestry, descendants
from shop.trace.conditions import Coverage, growing_conditions
from shop.trace.gs1 import digital_link, lot_gtin, short_url
from shop.trace.models import HarvestLot, Inspection, LotEvent
from shop.trace.ports import Sale, SalesOf

EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
GS1_ID = "https://id.gs1.org"
MDA = "urn:epcglobal:cbv:mda#"
UOM = {
    "kg": ("KGM", Decimal(1)),
    "g": ("GRM", Decimal(1)),
    "jin": ("KGM", Decimal("0.5")),
    "t": ("TNE", Decimal(1)),
}
SENSOR_TYPES = {
    # metric: (EPCIS measurement type, UN/ECE Rec 20 unit)
    "air_temperature": ("Temperature", "CEL"),
    "air_humidity": ("RelativeHumidity", "P1"),
    "soil_moisture": ("VolumeFraction", "P1"),
    "ec": ("Conductivity", "H61"),  # millisiemens per centimetre
    "ph": ("Dimensionless", None),
}
RESIDUE_TYPES = {
    # an inspection result's unit: (EPCIS measurement type, UN/ECE Rec 20 common code).
    # A residue in mg/kg is a mass fraction; GS1's measurement types have no MassFraction,
    # so it is Dimensionless with the unit saying which ratio (NA = mg/kg, J33 = µg/kg).
    "mg/kg": ("Dimensionless", "NA"),
    "ug/kg": ("Dimensionless", "J33"),
    "mg/L": ("MassConcentration", "M1"),
}


def _iso(ts: int | float | datetime) -> str:
    return clock.local(ts).isoformat(timespec="seconds")


class Exporter:
    def __init__(
        self, session: Session, base_url: str, company_prefix: str, *, sales_of: SalesOf, gln: str = ""
    ):
        self.session = session
        self.gln = gln
        self.sales_of = sales_of
        self.base = base_url.rstrip("/")
        self.prefix = company_prefix
        self.ns = f"{self.base}/ns/epcis#"
        self.classes: dict[str, HarvestLot] = {}  # every epcClass named, for the master data
        # location id (the page URL, or the SGLN with a GLN) -> greenhouse code (None: sales centre)
        self.locations: dict[str, str | None] = {}

    # identifiers ---------------------------------------------------------------------

    def class_gtin(self, lot: HarvestLot) -> str | None:
        """The GTIN the lot's label carries: the ONE place the exporter asks ``gs1`` for it."""
        return lot_gtin(lot)

    def lot_class(self, lot: HarvestLot) -> str:
        """The lot's identity, as its label prints it: GTIN + its own lot number (LGTIN)."""
        gtin = self.class_gtin(lot)
        ident = digital_link(GS1_ID, gtin, lot.lot_number) if gtin else short_url(self.base, lot.code)
        self.classes.setdefault(ident, lot)
        return ident

    def greenhouse_location(self, lot: HarvestLot) -> dict[str, str] | None:
        cycle = lot.crop_cycle
        if cycle is None:
            return None
        code = cycle.greenhouse.code
        ident = locations.sgln(self.gln, self.prefix, code) or self.base + locations.greenhouse_path(code)
        self.locations.setdefault(ident, cycle.greenhouse.code)
        return {"id": ident}

    def sales_centre(self) -> dict[str, str]:
        ident = locations.sgln(self.gln, self.prefix, None) or self.base + locations.sales_centre_path()
        self.locations.setdefault(ident, None)
        return {"id": ident}

    def quantity(self, lot: HarvestLot, qty: Decimal | None) -> dict[str, Any]:
        element: dict[str, Any] = {"epcClass": self.lot_class(lot)}
        if qty is not None:
            uom = UOM.get(lot.unit)
            if uom:
                element["quantity"] = float(Decimal(qty) * uom[1])
                element["uom"] = uom[0]
            else:  # a count of packs, boxes or bags: no unit of measure
                element["quantity"] = float(qty)
        return element

    def event_id(self, key: str) -> str:
        return uuid.uuid5(uuid.NAMESPACE_URL, f"{self.base}/epcis/{key}").urn

    @staticmethod
    def when(at: datetime) -> dict[str, str]:
        local = clock.local(at)
        offset = local.strftime("%z")  # "+0800"
        return {
            "eventTime": local.isoformat(timespec="seconds"),
            "eventTimeZoneOffset": f"{offset[:3]}:{offset[3:]}",
        }

    # events --------------------------------------------------------------------------

    def harvest(self, lot: HarvestLot, event: LotEvent) -> dict:
        cycle = lot.crop_cycle
        ilmd: dict[str, Any] = {"cbvmda:countryOfOrigin": "CN"}
        if lot.harvested_on:
            ilmd["cbvmda:harvestStartDate"] = lot.harvested_on.isoformat()
            ilmd["cbvmda:harvestEndDate"] = lot.harvested_on.isoformat()
        if cycle is not None:
            ilmd["ty:crop"] = cycle.crop
            ilmd["ty:plantedOn"] = cycle.planted_on.isoformat()
            if cycle.variety:
                ilmd["ty:variety"] = cycle.variety
            ilmd["ty:greenhouse"] = cycle.greenhouse.code
        if lot.household is not None:
            ilmd["ty:household"] = lot.household.code
        if lot.grade:
            ilmd["ty:grade"] = lot.grade
        out = {
            "type": "ObjectEvent",
            **self.when(event.at),
            "eventID": self.event_id(f"event/{event.id}"),
            "action": "ADD",
            "bizStep": "commissioning",
            "disposition": "active",
            "quantityList": [self.quantity(lot, lot.quantity)],
            "ilmd": ilmd,
        }
        loc = self.greenhouse_location(lot)
        if loc:
            out["readPoint"] = loc
            out["bizLocation"] = loc
        return out

    @staticmethod
    def coverage(cov: Coverage) -> dict[str, Any]:
        """What period the data covers, in the document's words (``ty:coverage``)."""
        out: dict[str, Any] = {
            "ty:cycleStart": _iso(cov.window_start),
            "ty:cycleEnd": _iso(cov.window_end),
            "ty:cycleDays": cov.window_days,
            "ty:cycleHours": cov.window_hours,
            "ty:daysWithData": cov.days,
            "ty:hoursWithData": cov.hours,
        }
        if cov.first is not None and cov.last is not None:
            out["ty:firstReading"] = _iso(cov.first)
            out["ty:lastReading"] = _iso(cov.last)
        out["ty:gaps"] = [{"ty:start": _iso(a), "ty:end": _iso(b)} for a, b in cov.gaps]
        return out

    def conditions(self, lot: HarvestLot) -> dict | None:
        cycle = lot.crop_cycle
        if cycle is None:
            return None
        cond = growing_conditions(self.session, cycle, lot.harvested_on)
        if not cond.stats or cond.coverage is None or cond.coverage.last is None:
            return None
        elements = []
        for name, stats in cond.stats.items():
            mtype, uom = SENSOR_TYPES[name]
            cov = cond.metric_coverage[name]
            summary: dict[str, Any] = {
                "type": mtype,
                "minValue": stats.min,
                "maxValue": stats.max,
                "meanValue": round(stats.mean, 4),
                "ty:metric": name,
                "ty:count": stats.count,
                "ty:hoursWithData": cov.hours,
                "ty:daysWithData": cov.days,
            }
            reports = [summary]
            for day in cond.daily.get(name, []):
                reports.append(
                    {
                        "type": mtype,
                        "time": _iso(day.ts),
                        "minValue": day.min,
                        "maxValue": day.max,
                        "meanValue": round(day.avg, 4),
                        "ty:metric": name,
                        "ty:count": day.count,
                    }
                )
            if uom:
                for report in reports:
                    report["uom"] = uom
            metadata: dict[str, Any] = {"dataProcessingMethod": f"{self.ns}hourlyAndDailyAggregate"}
            if cov.first is not None and cov.last is not None:  # the data's own period, not the cycle's
                metadata["startTime"] = _iso(cov.first)
                metadata["endTime"] = _iso(cov.last)
            elements.append({"sensorMetadata": metadata, "sensorReport": reports})
        out = {
            "type": "ObjectEvent",
            **self.when(min(datetime.fromtimestamp(cond.coverage.last, UTC), clock.now())),
            "eventID": self.event_id(f"conditions/{lot.id}"),
            "action": "OBSERVE",
            "bizStep": "sensor_reporting",
            "quantityList": [self.quantity(lot, lot.quantity)],
            "sensorElementList": elements,
            "ty:coverage": self.coverage(cond.coverage),
            # over the hours with temperature data, never over the cycle's hours
            "ty:hoursOutsideComfort": cond.hours_outside,
            "ty:hoursWithTemperature": cond.hours_with_temperature,
            "ty:irrigations": cond.irrigations,
            "ty:waterLitres": round(cond.water_l, 3),
        }
        loc = self.greenhouse_location(lot)
        if loc:
            out["readPoint"] = loc
            out["bizLocation"] = loc
        return out

    def substance(self, name: str, cas: str | None) -> str:
        """The ``chemicalSubstance`` URI: the CAS Registry Number through identifiers.org when
        known, else the substance's name in the document's own namespace."""
        if cas:
            return f"https://identifiers.org/cas:{cas}"
        return f"{self.ns}substance-{quote(name, safe='')}"

    def inspection(self, lot: HarvestLot, event: LotEvent, insp: Inspection | None) -> dict:
        out: dict[str, Any] = {
            "type": "ObjectEvent",
            **self.when(event.at),
            "eventID": self.event_id(f"event/{event.id}"),
            "action": "OBSERVE",
            "bizStep": "inspecting",
            "quantityList": [self.quantity(lot, None)],
        }
        if insp is not None:
            out["disposition"] = "conformant" if insp.passed else "non_conformant"
            out["ty:lab"] = insp.lab
            out["ty:inspectionType"] = insp.kind
            if insp.summary:
                out["ty:result"] = insp.summary
            if insp.certificate_file:
                out["certificationInfo"] = f"{self.base}/t/{lot.code}/certificate/{insp.id}"
            reports = []
            for r in insp.results:
                mtype, uom = RESIDUE_TYPES[r.unit]
                report: dict[str, Any] = {
                    "type": mtype,
                    "chemicalSubstance": self.substance(r.substance, r.cas),
                    "ty:substance": r.substance,
                    "ty:detected": r.detected,
                }
                if r.value is not None:
                    report["value"] = float(r.value)
                    report["uom"] = uom
                else:
                    report["stringValue"] = "not detected"
                if r.mrl is not None:
                    report["ty:maximumResidueLimit"] = float(r.mrl)
                    report["ty:limitUom"] = uom
                    report["ty:exceedsLimit"] = r.exceeds
                reports.append(report)
            if reports:
                out["sensorElementList"] = [
                    {"sensorMetadata": {"time": self.when(event.at)["eventTime"]}, "sensorReport": reports}
                ]
        return out

    def transformation(
        self,
        event: LotEvent,
        inputs: list[tuple[HarvestLot, Decimal]],
        outputs: list[HarvestLot],
        step: str,
    ) -> dict:
        """One TransformationEvent: a split (one input, the packs out) or a box (lots in, the box out)."""
        return {
            "type": "TransformationEvent",
            **self.when(event.at),
            "eventID": self.event_id(f"event/{event.id}/transform"),
            "inputQuantityList": [self.quantity(src, q) for src, q in inputs],
            "outputQuantityList": [self.quantity(out, out.quantity) for out in outputs],
            "bizStep": step,
            "disposition": "active",
        }

    def split(self, lot: HarvestLot, event: LotEvent, lots: dict[int, HarvestLot]) -> dict | None:
        """The parent's ``split`` into packs (a ``split`` towards a gift box is the box's event)."""
        outputs = [self._lot(lots, int(i)) for i, _q in (event.details or {}).get("outputs", [])]
        packs = [p for p in outputs if p is not None and p.kind == "pack"]
        if not packs:
            return None
        return self.transformation(event, [(lot, Decimal(event.quantity or 0))], packs, "repackaging")

    def merged(self, box: HarvestLot, event: LotEvent, lots: dict[int, HarvestLot]) -> dict | None:
        found = [(self._lot(lots, int(i)), Decimal(q)) for i, q in (event.details or {}).get("inputs", [])]
        inputs = [(src, q) for src, q in found if src is not None]
        if not inputs:
            return None
        return self.transformation(event, inputs, [box], "assembling")

    def observe(self, lot: HarvestLot, event: LotEvent) -> dict:
        step, disposition = {
            "sold": ("retail_selling", "retail_sold"),
            "shipped": ("shipping", "in_transit"),
            "recalled": ("holding", "recalled"),
        }[event.kind]
        out = {
            "type": "ObjectEvent",
            **self.when(event.at),
            "eventID": self.event_id(f"event/{event.id}"),
            "action": "OBSERVE",
            "bizStep": step,
            "disposition": disposition,
            "quantityList": [self.quantity(lot, event.quantity)],
            "readPoint": self.sales_centre(),
            "bizLocation": self.sales_centre(),
        }
        if event.note:
            out["ty:note"] = event.note
        return out

    def received(self, lot: HarvestLot, event: LotEvent) -> dict:
        """The sales centre weighed and accepted the lot (入库验收)."""
        out = {
            "type": "ObjectEvent",
            **self.when(event.at),
            "eventID": self.event_id(f"event/{event.id}"),
            "action": "OBSERVE",
            "bizStep": "receiving",
            "disposition": "in_progress",
            "quantityList": [self.quantity(lot, event.quantity)],
            "readPoint": self.sales_centre(),
            "bizLocation": self.sales_centre(),
        }
        if event.note:
            out["ty:note"] = event.note
        return out

    def order_uri(self, number: str) -> str:
        """The order as a URI: with a GLN the CBV form ``urn:epcglobal:cbv:bt:<GLN>:<number>``,
        else a URI in the sender's namespace (CBV 2.0 lets a business transaction be any URI its
        issuer controls); the customer's own order page is secret and never named."""
        if self.gln:
            return f"urn:epcglobal:cbv:bt:{self.gln}:{quote(number, safe='')}"
        return f"{self.ns}order-{quote(number, safe='')}"

    def sale(self, lot: HarvestLot, sale: Sale, n: int) -> dict:
        """A paid order's taking from the lot (recorded by the shop, not as a LotEvent)."""
        out: dict[str, Any] = {
            "type": "ObjectEvent",
            **self.when(sale.at),
            "eventID": self.event_id(f"sale/{lot.id}/{sale.order_number or n}/{sale.at.isoformat()}"),
            "action": "OBSERVE",
            "bizStep": "retail_selling",
            "disposition": "retail_sold",
            "quantityList": [self.quantity(lot, sale.quantity)],
            "readPoint": self.sales_centre(),
            "bizLocation": self.sales_centre(),
        }
        if sale.order_number:
            out["bizTransactionList"] = [{"type": "po", "bizTransaction": self.order_uri(sale.order_number)}]
        return out

    def _lot(self, lots: dict[int, HarvestLot], lot_id: int) -> HarvestLot | None:
        if lot_id not in lots:
            found = self.session.get(HarvestLot, lot_id)
            if found is None:
                return None
            lots[lot_id] = found
        return lots[lot_id]

    # master data ---------------------------------------------------------------------

    def master_data(self) -> dict[str, Any]:
        """``epcisMasterData``: the locations, the producer and the lot classes the events name."""
        row = producer_rows.get(self.session)
        street = "".join(part for part in (row.township, row.village, row.address) if part)

        def attrs(pairs: list[tuple[str, Any]]) -> list[dict[str, Any]]:
            return [{"id": key, "attribute": value} for key, value in pairs if value not in (None, "")]

        address = [
            (f"{MDA}streetAddressOne", street),
            (f"{MDA}city", row.county),
            (f"{MDA}state", row.province),
            (f"{MDA}countryCode", "CN"),
        ]
        places = []
        for ident, code in self.locations.items():
            place = locations.sales_centre_place(self.session) if code is None else None
            if code is not None:
                place = locations.greenhouse_place(self.session, code)
            name = (place.name if place else code) or "sales centre"
            page = self.base + (
                locations.sales_centre_path() if code is None else locations.greenhouse_path(code)
            )
            place_pairs = [(f"{MDA}name", name), *address, (f"{self.ns}producer", self.party())]
            if ident != page:  # an SGLN: say where its public page is
                place_pairs.append((f"{self.ns}page", page))
            places.append({"id": ident, "attributes": attrs(place_pairs)})
        party = {
            "id": self.party(),
            "attributes": attrs(
                [
                    (f"{MDA}name", row.name),
                    (f"{self.ns}creditCode", row.credit_code),  # 统一社会信用代码
                    (f"{self.ns}platformCode", row.platform_code),  # 主体码
                    (f"{self.ns}origin", producer_rows.origin(row)),  # 产地
                    *address,
                    (f"{self.ns}phone", row.phone),
                ]
            ),
        }
        classes = []
        for ident, lot in self.classes.items():
            product = lot.product
            pairs: list[tuple[str, Any]] = [(f"{MDA}lotNumber", lot.lot_number)]
            if product is not None:
                pairs.append((f"{MDA}descriptionShort", product.name_zh))
                pairs.append((f"{MDA}regulatedProductName", product.name_zh))
                if product.net_kg is not None:
                    pairs.append((f"{MDA}netWeight", {"value": float(product.net_kg), "uom": "KGM"}))
            elif lot.crop_cycle is not None:
                pairs.append((f"{MDA}descriptionShort", lot.crop_cycle.crop))
            pairs.append((f"{MDA}countryOfOrigin", "CN"))
            classes.append({"id": ident, "attributes": attrs(pairs)})
        return {
            "vocabularyList": [
                {"type": "urn:epcglobal:epcis:vtype:BusinessLocation", "vocabularyElementList": places},
                {
                    "type": "urn:epcglobal:epcis:vtype:ReadPoint",
                    "vocabularyElementList": [
                        {"id": p["id"], "attributes": p["attributes"][:1]} for p in places
                    ],
                },
                {"type": "urn:epcglobal:epcis:vtype:Party", "vocabularyElementList": [party]},
                {"type": "urn:epcglobal:epcis:vtype:EPCClass", "vocabularyElementList": classes},
            ]
        }

    def party(self) -> str:
        return f"{self.base}{locations.sales_centre_path()}#producer"

    # the document --------------------------------------------------------------------

    def document(self, lot: HarvestLot) -> dict:
        lots = {lot.id: lot}
        lots.update({r.lot.id: r.lot for r in ancestry(self.session, lot)})
        lots.update({r.lot.id: r.lot for r in descendants(self.session, lot)})
        family = dict(lots)  # the lots whose events and sales are exported (lots grows with siblings)
        inspections = {
            i.id: i for i in self.session.scalars(select(Inspection).where(Inspection.lot_id.in_(list(lots))))
        }
        events: list[tuple[datetime, int, dict]] = []
        for ev in self.session.scalars(
            select(LotEvent).where(LotEvent.lot_id.in_(list(lots))).order_by(LotEvent.at, LotEvent.id)
        ):
            owner = lots[ev.lot_id]
            found: dict | None = None
            if ev.kind == "harvested":
                events.append((ev.at, ev.id, self.harvest(owner, ev)))
                found = self.conditions(owner)
            elif ev.kind == "inspected":
                insp = inspections.get(int((ev.details or {}).get("inspection_id") or 0))
                found = self.inspection(owner, ev, insp)
            elif ev.kind == "split":  # the parent's side of a split into packs: one event
                found = self.split(owner, ev, lots)
            elif ev.kind == "merged":  # the box's side of a merge: one event
                found = self.merged(owner, ev, lots)
            elif ev.kind == "recalled" or (
                ev.kind in ("sold", "shipped") and not _after_recall(owner, ev.at)
            ):
                found = self.observe(owner, ev)
            elif ev.kind == "checked_in":
                found = self.received(owner, ev)
            # "packed" is the pack's side of its parent's split: exported once, as the split
            if found is not None:
                events.append((ev.at, ev.id, found))
        for lot_id, each in family.items():
            for n, sale in enumerate(self.sales_of(self.session, lot_id)):
                if not _after_recall(each, sale.at):  # goods of a recalled lot are never sold
                    events.append((sale.at, 0, self.sale(each, sale, n)))
        events.sort(key=lambda t: (t[0], t[1]))
        return {
            "@context": [EPCIS_CONTEXT, {"ty": self.ns}],
            "type": "EPCISDocument",
            "schemaVersion": "2.0",
            "creationDate": clock.now().isoformat(timespec="seconds").replace("+00:00", "Z"),
            "instanceIdentifier": self.event_id(f"document/{lot.lot_number}/{uuid.uuid4()}"),
            "sender": self.base,
            "epcisHeader": {"epcisMasterData": self.master_data()},
            "epcisBody": {"eventList": [e for _at, _id, e in events]},
        }


def _after_recall(lot: HarvestLot, at: datetime) -> bool:
    """An event at or after the lot's recall: a sale or shipment then is never exported."""
    recalled = lot.recalled_at
    return recalled is not None and at >= recalled


def export_lot(
    session: Session,
    lot: HarvestLot,
    base_url: str,
    company_prefix: str,
    *,
    sales_of: SalesOf,
    gln: str = "",
) -> dict:
    """The EPCIS 2.0 document (a JSON-serialisable dict) for ``lot`` and its family; with the
    cooperative's ``gln`` (``GS1_GLN``) its locations are SGLNs."""
    return Exporter(session, base_url, company_prefix, sales_of=sales_of, gln=gln).document(lot)


def validate(document: dict, schema: dict) -> list[str]:
    """Schema errors of ``document`` (empty when valid), with formats (URI, date-time) checked."""
    from jsonschema import Draft7Validator  # type: ignore[import-untyped]

    validator = Draft7Validator(schema, format_checker=Draft7Validator.FORMAT_CHECKER)
    return [
        f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)
    ]
