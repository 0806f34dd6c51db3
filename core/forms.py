"""Forms for login and account pages."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length


class LoginForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF ships no types
    username = StringField(_l("Username"), validators=[DataRequired(), Length(max=80)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=1024)])


class TokenForm(FlaskForm):  # type: ignore[misc]
    name = StringField(_l("Token name"), validators=[Length(max=80)])


class PasswordChangeForm(FlaskForm):  # type: ignore[misc]
    current = PasswordField(_l("Current password"), validators=[DataRequired()])
    new = PasswordField(
        _l("New password"),
        validators=[DataRequired()],
        description=_l("At least 10 characters, not your username, not a common password."),
    )
    confirm = PasswordField(_l("New password again"), validators=[DataRequired()])


class PasswordResetForm(FlaskForm):  # type: ignore[misc]
    new = PasswordField(
        _l("New password"),
        validators=[DataRequired()],
        description=_l("At least 10 characters, not the username, not a common password."),
    )
