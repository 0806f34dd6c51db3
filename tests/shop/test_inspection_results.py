"""Measured inspection results: substance, CAS number, value, unit and limit (MRL), read by one
service from the staff form (messages beside the row) and shown on the trace page in Chinese."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from shop.trace import inspections, lots
from shop.trace.errors import LotError
from tests.conftest import login
from tests.shop.trace_factories import make_farm


@pytest.fixture
def lot(session, make_user):
    farm = make_farm(session, planted_on=date(2026, 3, 1))
    make_user("zhaolin", "farmer", household_id=farm.household.id)
    made = lots.create_harvest_lot(
        session, farm.cycle, "50", "kg", harvested_on=date(2026, 3, 10), product_id=farm.peach.id
    )
    session.commit()
    return made


def _form(rows, result="pass"):
    data = {"lab": "临朐县农产品检测站", "tested_on": "2026-03-11", "result": result}
    for i, row in enumerate(rows):
        data.update({f"results-{i}-{key}": value for key, value in row.items()})
    return data


def test_cas_numbers_are_checked():
    assert inspections.valid_cas("2921-88-2") and inspections.valid_cas("7439-92-1")  # chlorpyrifos, lead
    assert not inspections.valid_cas("2921-88-3") and not inspections.valid_cas("292188-2")


def test_a_result_above_its_limit_cannot_pass(session, lot):
    over = inspections.read_results([{"substance": "毒死蜱", "value": "0.8", "unit": "mg/kg", "mrl": "0.5"}])
    with pytest.raises(LotError, match="above its limit"):
        inspections.record_inspection(session, lot, "SGS", date(2026, 3, 11), "pass", results=over)
    failed = inspections.record_inspection(session, lot, "SGS", date(2026, 3, 11), "fail", results=over)
    assert failed.results[0].exceeds and failed.results[0].value == Decimal("0.8")


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ({"substance": "毒死蜱", "cas": "2921-88-3", "value": "0.01"}, "cas", "2921-88-3"),
        ({"substance": "毒死蜱", "value": "a lot"}, "value", "a lot"),
        ({"substance": "毒死蜱", "value": "-1"}, "value", "negative"),
        ({"cas": "2921-88-2", "value": "0.01"}, "substance", "substance"),
        ({"substance": "毒死蜱", "value": "0.01", "unit": "ppm"}, "unit", "unit"),
    ],
)
def test_the_form_shows_a_wrong_row_beside_its_fields(client, session, lot, row, field, message):
    login(client, "zhaolin")
    good = {"substance": "多菌灵", "value": "ND", "unit": "mg/kg", "mrl": "2"}
    response = client.post(f"/trace/lots/{lot.id}/inspections?lang=en", data=_form([good, row]))
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    start = html.index('data-row="2"')
    beside = html[start : html.index("</div>", start)]
    assert "has-error" in html[start - 40 : start] and message in beside
    assert f'name="results-1-{field}"' in beside and 'aria-invalid="true"' in beside
    assert 'value="多菌灵"' in html  # what was typed is kept
    assert inspections.inspections_for(session, lot) == []  # nothing stored


def test_measured_results_are_stored_and_shown_in_chinese(client, session, lot):
    login(client, "zhaolin")
    rows = [
        {"substance": "毒死蜱", "cas": "2921-88-2", "value": "0.012", "unit": "mg/kg", "mrl": "0.5"},
        {"substance": "多菌灵", "cas": "10605-21-7", "value": "未检出", "unit": "mg/kg", "mrl": "2"},
        # a CAS number typed with full-width digits
        {"substance": "铅", "cas": "７４３９-９２-１", "value": "35", "unit": "ug/kg", "mrl": "100"},
    ]
    response = client.post(f"/trace/lots/{lot.id}/inspections", data=_form(rows))
    assert response.status_code == 302
    (inspection,) = inspections.inspections_for(session, lot)
    assert [(r.substance, r.cas, r.value) for r in inspection.results] == [
        ("毒死蜱", "2921-88-2", Decimal("0.012")),
        ("多菌灵", "10605-21-7", None),
        ("铅", "7439-92-1", Decimal("35")),
    ]
    client.post("/logout")
    html = client.get(f"/t/{lot.code}").get_data(as_text=True)
    table = html[html.index("data-measured") : html.index("</table>", html.index("data-measured"))]
    assert "毒死蜱" in table and "0.012 mg/kg" in table and "≤ 0.5 mg/kg" in table
    assert "未检出" in table and "35 µg/kg" in table and "CAS 2921-88-2" in table
    assert "限量以内" in table and "Substance" not in table
