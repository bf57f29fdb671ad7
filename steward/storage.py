"""Static files: fingerprinted, compressed, cached for a year.

``collectstatic`` (run by ``make run`` and ``make test``) writes each file under a name carrying a
hash of its content (``steward.3f2a9c1b0d4e.css``) with gzip and Brotli copies beside it, and a
manifest; pages link to those names, and WhiteNoise serves them compressed, ``immutable``, with a
cache lifetime of ten years: a changed file gets a new name, so a cached one is never stale.

A checkout where ``collectstatic`` has not run yet (a test process, a script) still works: a name
the manifest does not know is linked under its own name, served from the source directories with
WhiteNoise's short default lifetime."""

from __future__ import annotations

from pathlib import Path

import plotly
from django.contrib.staticfiles.finders import BaseFinder
from django.contrib.staticfiles.storage import StaticFilesStorage
from django.core.files.storage import FileSystemStorage
from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticStorage(CompressedManifestStaticFilesStorage):
    manifest_strict = False

    def url(self, name: str | None, force: bool = False) -> str:
        try:
            return super().url(name, force)
        except ValueError:  # not collected: neither in the manifest nor under STATIC_ROOT
            return StaticFilesStorage.url(self, name)


class PlotlyFinder(BaseFinder):
    """plotly.js from the plotly package itself (served by Steward, never from a CDN): its one
    script, ``plotly/plotly.min.js``, not the datasets and widget bundle that sit beside it."""

    name = "plotly.min.js"
    prefix = "plotly"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.storage = FileSystemStorage(location=Path(plotly.__file__).parent / "package_data")
        self.storage.prefix = self.prefix

    def check(self, **kwargs) -> list:
        return []

    def find(self, path: str, find_all: bool = False, **kwargs):
        if path != f"{self.prefix}/{self.name}":
            return [] if find_all else None
        found = self.storage.path(self.name)
        return [found] if find_all else found

    def list(self, ignore_patterns):
        yield self.name, self.storage
