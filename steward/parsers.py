"""One way to read a request body: JSON for the REST API (as DRF's parser) and for the feed's own views,
and the form parsers of the few API endpoints that take uploads.

Bounded: a document nested deeper than ``MAX_DEPTH`` is refused with a clear 400 instead of a
RecursionError; an integer of more than 4,300 digits, ``NaN`` and ``Infinity`` are refused; and
strings that no column can store (a NUL character, a lone surrogate) are refused naming the field,
in DRF's own words, before a serializer's lookup could send them to the database.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError

from .columns import NUL

MAX_DEPTH = 32  # arrays and objects; a decision batch nests three deep, the deepest API body five


class JSONBodyError(ValueError):
    """A body that is not JSON Steward accepts; ``errors`` is the ``{"field": ["message"]}`` answer."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{field}: {' '.join(messages)}" for field, messages in errors.items()))


MAX_INTEGER_DIGITS = 4300  # Python's own limit for converting decimal text (sys.int_info.default_max_str_digits)


class Unreadable:
    """Stands in a lenient parse for a value Steward cannot take (an integer of too many digits, an
    item nested too deep), so that the item holding it is refused on its own."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"<unreadable: {self.reason}>"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _digits_message(text: str) -> str:
    return f"an integer of {len(text.lstrip('-'))} digits; at most {MAX_INTEGER_DIGITS} are accepted"


def _strict_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise ValueError(_digits_message(text))
    return int(text)


def _lenient_int(text: str) -> int | Unreadable:
    return Unreadable(_digits_message(text)) if len(text.lstrip("-")) > MAX_INTEGER_DIGITS else int(text)


def too_deep_message(limit: int = MAX_DEPTH) -> str:
    return f"The JSON nests deeper than {limit} levels of arrays and objects."


def parse_json(body: bytes | str, *, strict: bool = True) -> Any:
    """The document in ``body``, or JSONBodyError.

    Strict (the API's bodies): deeper than MAX_DEPTH, an integer of too many digits, or a string no
    column can store refuses the whole body. Lenient (batches whose items are answered one by one):
    only what makes the body unreadable is refused; a too-long integer becomes ``Unreadable`` and
    the depth and text of each item are left to the caller.
    """
    try:
        document = _loads(body, _strict_int if strict else _lenient_int)
    except RecursionError:
        raise JSONBodyError({"detail": [too_deep_message()]}) from None
    except ValueError as error:  # UnicodeDecodeError included
        raise JSONBodyError({"detail": [f"JSON parse error - {error}"]}) from None
    if strict:
        if depth(document, MAX_DEPTH) > MAX_DEPTH:
            raise JSONBodyError({"detail": [too_deep_message()]})
        problem = unstorable_string(document)
        if problem is not None:
            raise JSONBodyError(problem)
    return document


def _loads(body: bytes | str, parse_int) -> Any:
    """``json.loads`` with ``parse_int``, the integers first left to the decoder's C code (the same values,
    several times faster): only a body it refuses (an integer of too many digits among others) is
    parsed again with ``parse_int``, for its answer."""
    try:
        return json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return json.loads(body, parse_constant=_refuse_constant, parse_int=parse_int)


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},:]')


def parse_json_batch(body: bytes, key: str, item_depth: int) -> Any:
    """A lenient parse of ``{key: [item, ...], ...}`` in which an item nested deeper than ``item_depth``
    (even so deep that the JSON decoder's recursion gives up) becomes ``Unreadable``, so the others
    still count. Anything else too deep refuses the body."""
    try:
        return parse_json(body, strict=False)
    except JSONBodyError:
        try:
            text = body.decode("utf-8") if isinstance(body, bytes) else body
        except UnicodeDecodeError:
            raise JSONBodyError({"detail": ["JSON parse error - the body is not UTF-8"]}) from None
        spans = _too_deep_items(text, key, item_depth)
        if not spans:
            raise
    pruned, position = [], 0
    for start, end in spans:
        pruned += [text[position:start], "null"]
        position = end
    pruned.append(text[position:])
    document = parse_json("".join(pruned), strict=False)
    items = document.get(key) if isinstance(document, dict) else None
    if isinstance(items, list):
        for index in spans.values():
            if index < len(items):
                items[index] = Unreadable(too_deep_message(item_depth))
    return document


def _too_deep_items(text: str, key: str, item_depth: int) -> dict[tuple[int, int], int]:
    """Where each item of ``key``'s list nested deeper than ``item_depth`` lies in ``text`` (start,
    end), in order, with its index; empty when something outside the list nests too deep."""
    spans: dict[tuple[int, int], int] = {}
    level, last_key, in_items = 0, None, False
    index, item_start, marked = 0, 0, False
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token[0] == '"':
            if level == 1:
                last_key = token
            continue
        if token in "[{":
            if level == 1 and token == "[" and last_key is not None and json.loads(last_key) == key:
                in_items, index, item_start = True, 0, match.end()
            level += 1
            if level > 2 + item_depth and not marked:
                if not in_items:
                    return {}
                marked = True
        elif token in "]}":
            level -= 1
            if in_items and level == 1:
                if marked:
                    spans[(item_start, match.start())] = index
                in_items, marked = False, False
        elif token == "," and in_items and level == 2:
            if marked:
                spans[(item_start, match.start())] = index
            index, item_start, marked = index + 1, match.end(), False
    return spans


def depth(document: Any, stop: int | None = None) -> int:
    """How deep arrays and objects nest in ``document`` (0 for a scalar); counting ends past ``stop``."""
    deepest = 0
    stack = [(document, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, level)
        if stop is not None and deepest > stop:
            return deepest
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


def _path(parts: tuple) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _text_problem(value: str) -> str | None:
    # DRF's CharField says the same for the fields it checks itself.
    if NUL in value:
        return "Null characters are not allowed."
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"Surrogate characters are not allowed: U+{ord(value[error.start]):X}."
    return None


def unstorable_string(document: Any) -> dict[str, list[str]] | None:
    """``{"field": [message]}`` for the first string (or key) holding a NUL or a lone surrogate."""
    stack: list[tuple[Any, tuple]] = [(document, ())]
    while stack:
        value, parts = stack.pop()
        if isinstance(value, str):
            problem = _text_problem(value)
            if problem is None:
                continue
        elif isinstance(value, dict):
            problem = None
            for key, child in value.items():
                if (problem := _text_problem(key)) is not None:
                    parts = (*parts, key)
                    break
                stack.append((child, (*parts, key)))
            if problem is None:
                continue
        elif isinstance(value, list):
            stack.extend((child, (*parts, index)) for index, child in enumerate(value))
            continue
        else:
            continue
        if not parts:
            return {"non_field_errors": [problem]}
        field = str(parts[0]).encode("utf-8", "backslashreplace").decode().replace(NUL, "\\u0000")
        where = _path(parts).encode("utf-8", "backslashreplace").decode().replace(NUL, "\\u0000")
        return {field: [problem if len(parts) == 1 else f"{where}: {problem}"]}
    return None


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser on ``parse_json``: the API's one body parser (``REST_FRAMEWORK`` settings)."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        raw = stream.read() if stream is not None else b""
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError) as error:
            raise ParseError(f"JSON parse error - {error}") from None
        try:
            return parse_json(text)
        except JSONBodyError as error:
            if list(error.errors) == ["detail"]:
                raise ParseError(error.errors["detail"][0]) from None
            raise ParseError(error.errors) from None


def _refuse_unstorable_form(data) -> None:
    for key, values in data.lists():
        for text in (key, *values):
            if isinstance(text, str) and (problem := _text_problem(text)) is not None:
                field = key.encode("utf-8", "backslashreplace").decode().replace(NUL, "\\u0000")
                raise ParseError({field or "non_field_errors": [problem]})


class FormParser(parsers.FormParser):
    """DRF's form parser, refusing values no column can store (as the JSON parser does)."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        _refuse_unstorable_form(data)
        return data


class MultiPartParser(parsers.MultiPartParser):
    """DRF's multipart parser, refusing field values no column can store (file contents are not text)."""

    def parse(self, stream, media_type=None, parser_context=None):
        result = super().parse(stream, media_type, parser_context)
        _refuse_unstorable_form(result.data)
        return result
