"""RFC 8785 (JCS) canonical JSON for the values Steward signs, with the ``rfc8785`` package.

Steward's documents hold only strings, integers, booleans, null, arrays and objects: money and
rates are integers, so a float anywhere is a mistake and is refused (with its path) rather than
approximated. The canonical form itself (member order by UTF-16 code units, ECMAScript string
escapes, the I-JSON integer range) is the package's, a well-kept implementation of the RFC.
"""

from __future__ import annotations

from typing import Any

import rfc8785


class CanonicalError(ValueError):
    pass


MAX_SAFE_INTEGER = 2**53 - 1


def _check(value: Any, path: str) -> None:
    """Refuse, naming the path, what JCS cannot represent exactly, and floats (Steward signs none)."""
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise CanonicalError(f"{path}: lone surrogates are not valid Unicode (I-JSON)") from None
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise CanonicalError(f"{path}: integer {value} is outside the I-JSON range")
        return
    if isinstance(value, float):
        raise CanonicalError(f"{path}: floats are not allowed; use integers (micro-USD, basis points)")
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalError(f"{path}: object keys must be strings")
            _check(key, f"{path} key")
            _check(item, f"{path}.{key}")
        return
    raise CanonicalError(f"{path}: {type(value).__name__} cannot be canonicalised")


def canonical_json(value: Any) -> bytes:
    """The JCS bytes of ``value``."""
    _check(value, "$")
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as error:
        raise CanonicalError(str(error)) from None
