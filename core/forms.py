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
