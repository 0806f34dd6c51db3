"""Forms of the production record on the staff cycle page: inputs and pest control.

Numbers and dates are plain text fields read by ``shop.trace.production`` (and
``core.parse``), so a mistyped value is a message beside its field, never a 500.
"""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, TextAreaField
from wtforms.validators import Length, Optional

KIND_CHOICES = [
    ("fertiliser", _l("Fertiliser")),
    ("pesticide", _l("Pesticide")),
    ("other", _l("Other input")),
]
CLASS_CHOICES = [
    ("", "—"),
    ("fungicide", _l("Fungicide")),
    ("insecticide", _l("Insecticide")),
    ("herbicide", _l("Herbicide")),
    ("acaricide", _l("Acaricide")),
    ("regulator", _l("Plant growth regulator")),
    ("other", _l("Other pesticide")),
]
METHOD_CHOICES = [
    ("", "—"),
    ("spray", _l("Spraying")),
    ("drench", _l("Applied with irrigation water")),
    ("drip", _l("Drip fertigation")),
    ("broadcast", _l("Broadcast")),
    ("hole", _l("Hole application")),
    ("furrow", _l("Furrow application")),
    ("soil", _l("Soil treatment")),
    ("seed", _l("Seed treatment")),
    ("fumigate", _l("Fumigation")),
    ("other", _l("Other method")),
]
AMOUNT_UNIT_CHOICES = [("kg", _l("kg")), ("g", _l("g")), ("L", _l("litres")), ("mL", _l("mL"))]
RATE_UNIT_CHOICES = [
    ("", "—"),
    ("g/mu", _l("g per mu")),
    ("kg/mu", _l("kg per mu")),
    ("mL/mu", _l("mL per mu")),
    ("L/mu", _l("L per mu")),
    ("dilution", _l("times dilution")),
]
CONTROL_CHOICES = [
    ("chemical", _l("Chemical control")),
    ("physical", _l("Physical control")),
    ("biological", _l("Biological control")),
    ("agronomic", _l("Agronomic control")),
    ("none", _l("Observed only")),
]


class ProductionInputForm(FlaskForm):
    kind = SelectField(_l("Kind of input"), choices=KIND_CHOICES, default="fertiliser")
    product = StringField(_l("Name of the product"), validators=[Optional(), Length(max=120)])
    pesticide_class = SelectField(_l("Pesticide class"), choices=CLASS_CHOICES, default="")
    registration_no = StringField(
        _l("Registration number"),
        validators=[Optional(), Length(max=40)],
        description=_l("Pesticides: the 农药登记证号 on the label, e.g. PD20080001. Fertilisers: optional."),
    )
    target = StringField(_l("Pest or disease controlled"), validators=[Optional(), Length(max=120)])
    interval_days = StringField(
        _l("Pre-harvest interval (days)"),
        validators=[Optional(), Length(max=10)],
        description=_l("安全间隔期, as printed on the pesticide's label."),
    )
    method = SelectField(_l("Method"), choices=METHOD_CHOICES, default="")
    amount = StringField(_l("Amount used"), validators=[Optional(), Length(max=30)])
    unit = SelectField(_l("Unit"), choices=AMOUNT_UNIT_CHOICES, default="kg")
    rate = StringField(_l("Dose"), validators=[Optional(), Length(max=30)])
    rate_unit = SelectField(_l("Dose unit"), choices=RATE_UNIT_CHOICES, default="")
    applied_on = StringField(_l("Applied on"), validators=[Optional(), Length(max=20)])
    supplier = StringField(_l("Bought from"), validators=[Optional(), Length(max=120)])
    purchased_on = StringField(_l("Bought on"), validators=[Optional(), Length(max=20)])
    purchase_ref = StringField(_l("Receipt or invoice number"), validators=[Optional(), Length(max=60)])
    note = StringField(_l("Note"), validators=[Optional(), Length(max=1000)])
    override_reason = TextAreaField(
        _l("Official's reason to record it although a harvest lies inside its interval"),
        validators=[Optional(), Length(max=500)],
    )


class PestControlForm(FlaskForm):
    observed_on = StringField(_l("Observed on"), validators=[Optional(), Length(max=20)])
    observation = TextAreaField(_l("What was observed"), validators=[Optional(), Length(max=1000)])
    control = SelectField(_l("What was done"), choices=CONTROL_CHOICES, default="chemical")
    input_use_id = SelectField(_l("Pesticide applied"), coerce=int, choices=[(0, "—")], default=0)
    measure = TextAreaField(_l("Measure taken"), validators=[Optional(), Length(max=1000)])
