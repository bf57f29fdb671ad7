"""The router's state directory: the last good envelope, its ETag and the trusted root, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` so that ``path`` holds either the old or the new bytes, never a mixture."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class StateDir:
    """``envelope.json`` (exact bytes), ``etag``, ``state.json`` and ``roots/N.root.json`` (each walked root)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def _file(self, name: str) -> Path:
        return self.path / name

    def read(self, name: str) -> bytes | None:
        try:
            return self._file(name).read_bytes()
        except FileNotFoundError:
            return None

    @property
    def envelope(self) -> bytes | None:
        return self.read("envelope.json")

    @property
    def etag(self) -> str | None:
        data = self.read("etag")
        return data.decode().strip() if data else None

    def root_version(self, version: int) -> bytes | None:
        """Trust root ``version`` as fetched by an earlier walk (roots/N.root.json)."""
        return self.read(f"roots/{version}.root.json")

    def info(self) -> dict:
        data = self.read("state.json")
        return json.loads(data) if data else {}

    def save_root(self, version: int, data: bytes) -> None:
        write_atomically(self._file(f"roots/{version}.root.json"), data)

    def save_policy(self, envelope: bytes, etag: str | None, info: dict) -> None:
        # The envelope first: state.json describes what envelope.json holds.
        write_atomically(self._file("envelope.json"), envelope)
        write_atomically(self._file("etag"), (etag or "").encode())
        write_atomically(self._file("state.json"), json.dumps(info, indent=2, sort_keys=True).encode())

    def snapshot(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        """The policy files as they are now, for ``restore``."""
        return self.read("envelope.json"), self.read("etag"), self.read("state.json")

    def restore(self, snapshot: tuple[bytes | None, bytes | None, bytes | None]) -> None:
        """Put the policy files back as ``snapshot`` found them (absent files are removed again)."""
        for name, data in zip(("envelope.json", "etag", "state.json"), snapshot, strict=True):
            if data is None:
                self._file(name).unlink(missing_ok=True)
            else:
                write_atomically(self._file(name), data)
