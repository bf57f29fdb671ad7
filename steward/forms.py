"""Form helpers shared by every app."""

from __future__ import annotations

from django.db import models


def formfield_https_urls(field: models.Field, **kwargs):
    """ModelForm ``formfield_callback``: URLs typed without a scheme are taken as https://."""
    if isinstance(field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return field.formfield(**kwargs)
