"""The places an EPCIS document names (``readPoint``/``bizLocation``): a greenhouse and the
sales centre, as the public facts a location page and the document's master data show.

Nothing personal beyond what a trace page already shows: a greenhouse's name and code and
the producer's name, 产地, address and phone (``shop.trace.producer``); not the household.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from iot.models import Greenhouse
from shop.trace import producer as producer_rows

SALES_CENTRE = "sales-centre"
_EXTENSION = re.compile(r"[A-Za-z0-9._-]{1,20}")  # a safe subset of GS1 AI (254)'s characters


def sgln(gln: str, company_prefix: str, greenhouse_code: str | None) -> str | None:
    """The SGLN EPC URI of a place under the cooperative's GLN (``core.config`` checked it:
    13 digits, check digit, under the company prefix): the sales centre is the GLN itself
    (extension ``0``), a greenhouse the GLN with its code as extension (AI 254). None without
    a GLN, or for a greenhouse code an extension cannot carry (it keeps its page URL)."""
    prefix = "".join(ch for ch in company_prefix if ch.isdigit())
    if not gln or not prefix or not gln.startswith(prefix):
        return None
    if greenhouse_code is None:
        extension = "0"
    elif _EXTENSION.fullmatch(greenhouse_code) and greenhouse_code != "0":
        extension = greenhouse_code
    else:
        return None
    return f"urn:epc:id:sgln:{prefix}.{gln[len(prefix) : 12]}.{extension}"


def greenhouse_path(code: str) -> str:
    from urllib.parse import quote

    return f"/loc/greenhouse/{quote(code, safe='')}"


def sales_centre_path() -> str:
    return f"/loc/{SALES_CENTRE}"


@dataclass(frozen=True)
class Place:
    kind: str  # "greenhouse" | "sales_centre"
    name: str
    code: str | None
    area_m2: float | None
    producer: str
    credit_code: str
    platform_code: str
    origin: str  # 产地: province, county, township, village
    province: str
    county: str
    street: str  # township, village, street and house number
    phone: str

    def json_ld(self, url: str) -> dict[str, Any]:
        """schema.org ``Place`` (JSON-LD) with the producer as an ``Organization``."""
        address = {
            "@type": "PostalAddress",
            "addressCountry": "CN",
            "addressRegion": self.province or None,
            "addressLocality": self.county or None,
            "streetAddress": self.street or None,
        }
        organisation: dict[str, Any] = {"@type": "Organization", "@id": f"{url.split('#')[0]}#producer"}
        if self.producer:
            organisation["name"] = self.producer
        ids = []
        if self.credit_code:
            ids.append(
                {"@type": "PropertyValue", "propertyID": "统一社会信用代码", "value": self.credit_code}
            )
        if self.platform_code:
            ids.append({"@type": "PropertyValue", "propertyID": "主体码", "value": self.platform_code})
        if ids:
            organisation["identifier"] = ids
        if self.phone:
            organisation["telephone"] = self.phone
        out: dict[str, Any] = {
            "@context": "https://schema.org",
            "@type": "Place",
            "@id": url,
            "name": self.name,
            "address": {k: v for k, v in address.items() if v},
            "additionalType": "greenhouse" if self.kind == "greenhouse" else "sales centre",
        }
        if self.code:
            out["identifier"] = self.code
        if self.area_m2:
            out["floorSize"] = {"@type": "QuantitativeValue", "value": self.area_m2, "unitCode": "MTK"}
        if self.kind == "greenhouse":
            out["containedInPlace"] = {"@type": "Place", "name": self.origin} if self.origin else None
            out["maintainer"] = organisation
        else:
            out["owner"] = organisation
        return {k: v for k, v in out.items() if v is not None}


def _place(session: Session, kind: str, name: str, code: str | None, area: float | None) -> Place:
    row = producer_rows.get(session)
    return Place(
        kind=kind,
        name=name,
        code=code,
        area_m2=area,
        producer=row.name,
        credit_code=row.credit_code,
        platform_code=row.platform_code,
        origin=producer_rows.origin(row),
        province=row.province,
        county=row.county,
        street="".join(part for part in (row.township, row.village, row.address) if part),
        phone=row.phone,
    )


def greenhouse_place(session: Session, code: str) -> Place | None:
    gh = session.scalar(select(Greenhouse).where(Greenhouse.code == code))
    if gh is None:
        return None
    return _place(session, "greenhouse", gh.name, gh.code, gh.area_m2)


def sales_centre_place(session: Session) -> Place:
    row = producer_rows.get(session)
    return _place(session, "sales_centre", row.name, None, None)
