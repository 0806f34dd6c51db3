"""Forms of the traceability pages: few fields, sensible defaults, big targets on a phone."""

from __future__ import annotations

from decimal import Decimal

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, FileField
from wtforms import DateField, DecimalField, FloatField, IntegerField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

UNITS = [("kg", _l("kg")), ("jin", _l("jin (500 g)")), ("box", _l("box")), ("bag", _l("bag"))]
# a DecimalField's data is a Decimal: compared with the float 0.001 (a hair above it), its
# own stated minimum "0.001" would be refused; bounds of DecimalFields are Decimals
MIN_QUANTITY = Decimal("0.001")
INPUT_UNITS = [("kg", _l("kg")), ("g", _l("g")), ("L", _l("litres"))]


class CropCycleForm(FlaskForm):
    greenhouse_id = SelectField(_l("Greenhouse"), coerce=int, validators=[InputRequired()])
    crop = StringField(_l("Crop"), validators=[DataRequired(), Length(max=60)])
    variety = StringField(_l("Variety"), validators=[Optional(), Length(max=80)])
    planted_on = DateField(_l("Planted on"), validators=[DataRequired()])
    expected_harvest_on = DateField(_l("Expected harvest"), validators=[Optional()])
    comfort_min_c = FloatField(
        _l("Comfortable from (°C)"),
        validators=[Optional(), NumberRange(-20, 50)],
        description=_l("Leave empty for the crop's usual range."),
    )
    comfort_max_c = FloatField(_l("Comfortable up to (°C)"), validators=[Optional(), NumberRange(-20, 60)])


class HarvestForm(FlaskForm):
    cycle_id = SelectField(_l("Crop cycle"), coerce=int, validators=[InputRequired()])
    product_id = SelectField(_l("Product"), coerce=int, validators=[Optional()])
    harvested_on = DateField(_l("Harvested on"), validators=[DataRequired()])
    quantity = DecimalField(
        _l("Quantity"), places=3, validators=[InputRequired(), NumberRange(min=MIN_QUANTITY)]
    )
    unit = SelectField(_l("Unit"), choices=UNITS, default="kg")
    grade = SelectField(
        _l("Grade"),
        choices=[("", "—"), ("A", "A"), ("B", "B"), ("C", "C")],
        default="",
        validators=[Optional()],
    )
    # officials only: harvest inside a pesticide's pre-harvest interval (shop.trace.production)
    override_reason = TextAreaField(
        _l("Official's reason to harvest inside the pre-harvest interval"),
        validators=[Optional(), Length(max=500)],
    )


class InputForm(FlaskForm):
    product = StringField(_l("Fertilizer or input"), validators=[DataRequired(), Length(max=120)])
    amount = DecimalField(_l("Amount"), places=3, validators=[InputRequired(), NumberRange(min=MIN_QUANTITY)])
    unit = SelectField(_l("Unit"), choices=INPUT_UNITS, default="kg")
    applied_on = DateField(_l("Applied on"), validators=[DataRequired()])


class SplitForm(FlaskForm):
    count = IntegerField(
        _l("Number of packs"), validators=[InputRequired(), NumberRange(min=1, max=500)], default=10
    )
    size = DecimalField(
        _l("Each pack holds"), places=3, validators=[InputRequired(), NumberRange(min=MIN_QUANTITY)]
    )
    product_id = SelectField(_l("Sold as"), coerce=int, validators=[Optional()])


RESULT_ROWS = 5  # measured substances one inspection form takes (empty rows are skipped)


class InspectionForm(FlaskForm):
    lab = StringField(_l("Laboratory"), validators=[DataRequired(), Length(max=120)])
    tested_on = DateField(_l("Tested on"), validators=[DataRequired()])
    result = SelectField(
        _l("Result"), choices=[("pass", _l("Passed")), ("fail", _l("Failed"))], default="pass"
    )
    summary = StringField(
        _l("Findings"),
        validators=[Optional(), Length(max=300)],
        description=_l("For example: 62 pesticides tested, none detected."),
    )
    certificate = FileField(
        _l("Certificate (PDF or photo)"),
        validators=[FileAllowed(["pdf", "png", "jpg", "jpeg", "webp"], _l("PDF or image files only."))],
    )


class RecallForm(FlaskForm):
    reason = TextAreaField(_l("Reason for the recall"), validators=[DataRequired(), Length(max=500)])


class MergeForm(FlaskForm):
    product_id = SelectField(_l("Product"), coerce=int, validators=[InputRequired()])
