"""Form helpers shared by every app."""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models


def formfield_https_urls(field: models.Field, **kwargs):
    """ModelForm ``formfield_callback``: URLs typed without a scheme are taken as https://."""
    if isinstance(field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return field.formfield(**kwargs)


def add_model_errors(form: forms.Form, error: ValidationError) -> None:
    """Attach a model's ``ValidationError`` to ``form``: by field where the form has it, else on top."""
    if hasattr(error, "error_dict"):
        for field, messages in error.message_dict.items():
            form.add_error(field if field in form.fields else None, messages)
    else:
        form.add_error(None, error.messages)


def refusals_on(form: forms.Form, act: Callable[[], object]) -> bool:
    """Run ``act`` (a domain action); its refusals (ValidationError, PermissionDenied) go on ``form``
    as a whole, above its fields. True when the action went through."""
    try:
        act()
    except ValidationError as error:
        for message in error.messages:
            form.add_error(None, message)
    except PermissionDenied as error:
        form.add_error(None, str(error))
    else:
        return True
    return False
