"""RFC 8785 (JCS) canonical JSON for the values Steward signs.

Steward's documents hold only strings, integers, booleans, null, arrays and objects — money
and rates are integers — so canonicalisation is: object members sorted by their names' UTF-16
code units, no insignificant white space, strings as ECMAScript ``JSON.stringify`` writes them
(UTF-8, escaping only what must be escaped), integers in plain decimal. Floats are refused
rather than approximated.
"""

from __future__ import annotations

import json
from typing import Any

MAX_SAFE_INTEGER = 2**53 - 1


class CanonicalError(ValueError):
    pass


def _check(value: Any, path: str) -> None:
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


def _encode(value: Any) -> str:
    if isinstance(value, dict):
        members = sorted(value.items(), key=lambda item: item[0].encode("utf-16-be"))
        return "{" + ",".join(f"{_encode(k)}:{_encode(v)}" for k, v in members) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(item) for item in value) + "]"
    # json.dumps with ensure_ascii=False writes strings, integers, booleans and null as JCS does.
    return json.dumps(value, ensure_ascii=False)


def canonical_json(value: Any) -> bytes:
    """The JCS bytes of ``value``."""
    _check(value, "$")
    return _encode(value).encode("utf-8")
