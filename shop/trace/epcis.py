"""EPCIS 2.0 export: a lot's events as a JSON-LD ``EPCISDocument``.

Mapping (CBV 2.0 vocabulary):

* harvest → ObjectEvent ADD, bizStep ``commissioning``, with ILMD (harvest date, variety,
  greenhouse, household) and the lot as a class-level quantity (LGTIN);
* growing conditions → ObjectEvent OBSERVE, bizStep ``sensor_reporting``, with one
  ``sensorElement`` per metric (cycle min/max/mean, then one report per day);
* inspection → ObjectEvent OBSERVE, bizStep ``inspecting``, disposition ``conformant`` /
  ``non_conformant``, the certificate URL in ``certificationInfo``;
* split into packs and merge into a box → TransformationEvent (inputs → outputs), and
  AggregationEvent ADD, bizStep ``packing``: the pack or box (its GTIN + code as
  serial) contains the quantities it was made from;
* checked in at the sales centre (入库验收) → ObjectEvent OBSERVE, bizStep ``receiving``,
  disposition ``in_progress``, with the weighed quantity;
* sold / shipped / recalled → ObjectEvent OBSERVE (``retail_selling`` / ``shipping`` /
  ``holding`` with disposition ``recalled``). No sale or shipment of a lot is exported at or
  after its ``recalled`` event (a payment that arrives after a recall is refunded, not a sale).

Lots are identified as GS1 Digital Link URIs on the canonical ``https://id.gs1.org``
domain; a lot whose product has no GTIN falls back to the public short URL. The
document covers the lot, everything it was made from and everything made from it.
Sales come from the shop's paid orders, handed in as ``sales_of`` (``ShopPort``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import clock
from shop.trace.ancestry import ancestry, descendants
from shop.trace.conditions import growing_conditions
from shop.trace.gs1 import digital_link, lot_gtin, short_url
from shop.trace.models import HarvestLot, Inspection, LotEvent
from shop.trace.ports import Sale, SalesOf

EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
GS1_ID = "https://id.gs1.org"
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


class Exporter:
    def __init__(self, session: Session, base_url: str, company_prefix: str, *, sales_of: SalesOf):
        self.session = session
        self.sales_of = sales_of
        self.base = base_url.rstrip("/")
        self.prefix = company_prefix
        self.ns = f"{self.base}/ns/epcis#"

    # identifiers ---------------------------------------------------------------------

    def lot_class(self, lot: HarvestLot) -> str:
        gtin = lot_gtin(lot)
        return digital_link(GS1_ID, gtin, lot.lot_number) if gtin else short_url(self.base, lot.code)

    def instance(self, lot: HarvestLot) -> str:
        """An instance id for a pack or box: its GTIN with the trace code as serial (AI 21)."""
        gtin = lot_gtin(lot)
        return f"{GS1_ID}/01/{gtin}/21/{lot.code}" if gtin else short_url(self.base, lot.code)

    def location(self, lot: HarvestLot) -> dict[str, str] | None:
        cycle = lot.crop_cycle
        if cycle is None:
            return None
        return {"id": f"{self.base}/loc/greenhouse/{cycle.greenhouse.code}"}

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
        loc = self.location(lot)
        if loc:
            out["readPoint"] = loc
            out["bizLocation"] = loc
        return out

    def conditions(self, lot: HarvestLot) -> dict | None:
        cycle = lot.crop_cycle
        if cycle is None:
            return None
        cond = growing_conditions(self.session, cycle, lot.harvested_on)
        if not cond.stats:
            return None
        start = datetime.fromtimestamp(cond.start, UTC)
        end = datetime.fromtimestamp(cond.end, UTC)
        elements = []
        for name, stats in cond.stats.items():
            mtype, uom = SENSOR_TYPES[name]
            summary: dict[str, Any] = {
                "type": mtype,
                "minValue": stats.min,
                "maxValue": stats.max,
                "meanValue": round(stats.mean, 4),
                "ty:metric": name,
                "ty:count": stats.count,
            }
            reports = [summary]
            for day in cond.daily.get(name, []):
                reports.append(
                    {
                        "type": mtype,
                        "time": clock.local(day.ts).isoformat(timespec="seconds"),
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
            elements.append(
                {
                    "sensorMetadata": {
                        "startTime": clock.local(start).isoformat(timespec="seconds"),
                        "endTime": clock.local(end).isoformat(timespec="seconds"),
                        "dataProcessingMethod": f"{self.ns}dailyAggregate",
                    },
                    "sensorReport": reports,
                }
            )
        return {
            "type": "ObjectEvent",
            **self.when(min(end, clock.now())),
            "eventID": self.event_id(f"conditions/{lot.id}"),
            "action": "OBSERVE",
            "bizStep": "sensor_reporting",
            "quantityList": [self.quantity(lot, lot.quantity)],
            "readPoint": self.location(lot),
            "sensorElementList": elements,
            "ty:hoursOutsideComfort": cond.hours_outside,
            "ty:irrigations": cond.irrigations,
            "ty:waterLitres": round(cond.water_l, 3),
        }

    def inspection(self, lot: HarvestLot, event: LotEvent, insp: Inspection | None) -> dict:
        out = {
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
        return out

    def transformation(self, lot: HarvestLot, event: LotEvent, lots: dict[int, HarvestLot]) -> list[dict]:
        """A pack's ``packed`` or a box's ``merged`` event: transformation + aggregation."""
        found = [(self._lot(lots, int(i)), Decimal(q)) for i, q in (event.details or {}).get("inputs", [])]
        inputs = [(src, q) for src, q in found if src is not None]
        if not inputs:
            return []
        input_list = [self.quantity(src, q) for src, q in inputs]
        out_q = self.quantity(lot, lot.quantity)
        base = self.when(event.at)
        events: list[dict] = [
            {
                "type": "TransformationEvent",
                **base,
                "eventID": self.event_id(f"event/{event.id}/transform"),
                "inputQuantityList": input_list,
                "outputQuantityList": [out_q],
                "bizStep": "repackaging" if event.kind == "packed" else "assembling",
                "disposition": "active",
            },
            {
                "type": "AggregationEvent",
                **base,
                "eventID": self.event_id(f"event/{event.id}/aggregate"),
                "parentID": self.instance(lot),
                "childQuantityList": input_list,
                "action": "ADD",
                "bizStep": "packing",
                "disposition": "container_closed",
            },
        ]
        return events

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
        }
        if event.note:
            out["ty:note"] = event.note
        return out

    def sale(self, lot: HarvestLot, sale: Sale, n: int) -> dict:
        """A paid order's taking from the lot (recorded by the shop, not as a LotEvent)."""
        return {
            "type": "ObjectEvent",
            **self.when(sale.at),
            "eventID": self.event_id(f"sale/{lot.id}/{n}/{sale.at.isoformat()}"),
            "action": "OBSERVE",
            "bizStep": "retail_selling",
            "disposition": "retail_sold",
            "quantityList": [self.quantity(lot, sale.quantity)],
        }

    def _lot(self, lots: dict[int, HarvestLot], lot_id: int) -> HarvestLot | None:
        if lot_id not in lots:
            found = self.session.get(HarvestLot, lot_id)
            if found is None:
                return None
            lots[lot_id] = found
        return lots[lot_id]

    # the document --------------------------------------------------------------------

    def document(self, lot: HarvestLot) -> dict:
        lots = {lot.id: lot}
        lots.update({r.lot.id: r.lot for r in ancestry(self.session, lot)})
        lots.update({r.lot.id: r.lot for r in descendants(self.session, lot)})
        inspections = {
            i.id: i for i in self.session.scalars(select(Inspection).where(Inspection.lot_id.in_(list(lots))))
        }
        events: list[tuple[datetime, int, dict]] = []
        for ev in self.session.scalars(
            select(LotEvent).where(LotEvent.lot_id.in_(list(lots))).order_by(LotEvent.at, LotEvent.id)
        ):
            owner = lots[ev.lot_id]
            if ev.kind == "harvested":
                events.append((ev.at, ev.id, self.harvest(owner, ev)))
                cond = self.conditions(owner)
                if cond:
                    events.append((ev.at, ev.id, cond))
            elif ev.kind == "inspected":
                insp = inspections.get(int((ev.details or {}).get("inspection_id") or 0))
                events.append((ev.at, ev.id, self.inspection(owner, ev, insp)))
            elif ev.kind in ("packed", "merged"):
                events.extend((ev.at, ev.id, e) for e in self.transformation(owner, ev, lots))
            elif ev.kind == "recalled" or (
                ev.kind in ("sold", "shipped") and not _after_recall(owner, ev.at)
            ):
                events.append((ev.at, ev.id, self.observe(owner, ev)))
            elif ev.kind == "checked_in":
                events.append((ev.at, ev.id, self.received(owner, ev)))
            # "split" is the parent's side of a pack/merge event: exported once, from the child
        for lot_id, each in lots.items():
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
            "epcisBody": {"eventList": [e for _at, _id, e in events]},
        }


def _after_recall(lot: HarvestLot, at: datetime) -> bool:
    """An event at or after the lot's recall: a sale or shipment then is never exported."""
    recalled = lot.recalled_at
    return recalled is not None and at >= recalled


def export_lot(
    session: Session, lot: HarvestLot, base_url: str, company_prefix: str, *, sales_of: SalesOf
) -> dict:
    """The EPCIS 2.0 document (a JSON-serialisable dict) for ``lot`` and its family."""
    return Exporter(session, base_url, company_prefix, sales_of=sales_of).document(lot)


def validate(document: dict, schema: dict) -> list[str]:
    """Schema errors of ``document`` (empty when valid), with formats (URI, date-time) checked."""
    from jsonschema import Draft7Validator  # type: ignore[import-untyped]

    validator = Draft7Validator(schema, format_checker=Draft7Validator.FORMAT_CHECKER)
    return [
        f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)
    ]
