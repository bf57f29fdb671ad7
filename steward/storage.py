"""Static files: fingerprinted, compressed, cached for a year.

``collectstatic`` (run by ``make run`` and ``make test``) writes each file under a name carrying a
hash of its content (``steward.3f2a9c1b0d4e.css``) with gzip and Brotli copies beside it, and a
manifest; pages link to those names, and WhiteNoise serves them compressed, ``immutable``, with a
cache lifetime of ten years: a changed file gets a new name, so a cached one is never stale.

A checkout where ``collectstatic`` has not run yet (a test process, a script), or whose own static
files changed since it ran, still works: a name the manifest does not know is linked under its own
name, served fresh from the source directories with WhiteNoise's short default lifetime."""

from __future__ import annotations

import os
from pathlib import Path

import plotly
from django.conf import settings
from django.contrib.staticfiles.finders import BaseFinder
from django.contrib.staticfiles.storage import StaticFilesStorage
from django.core.files.storage import FileSystemStorage
from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticStorage(CompressedManifestStaticFilesStorage):
    manifest_strict = False

    def load_manifest(self) -> tuple[dict, str]:
        """The manifest, unless Steward's own static files changed since it was written (a developer
        editing the stylesheet): then every file is linked under its own name, fresh from the source."""
        hashed_files, manifest_hash = super().load_manifest()
        if hashed_files and self._sources_changed():
            return {}, ""
        return hashed_files, manifest_hash

    def _sources_changed(self) -> bool:
        try:
            collected = os.path.getmtime(self.manifest_storage.path(self.manifest_name))
        except (OSError, NotImplementedError):
            return False
        for directory in settings.STATICFILES_DIRS:
            for path in Path(directory if isinstance(directory, str | Path) else directory[1]).rglob("*"):
                if path.is_file() and path.stat().st_mtime > collected:
                    return True
        return False

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
