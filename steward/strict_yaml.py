"""Strict YAML for everything people write by hand (routing policies, evaluation suites).

A safe loader with limits: no aliases or anchors (no alias bombs), only the plain YAML types (dates
stay strings; any other tag is refused), string keys without duplicates, and a bounded nesting
depth. Every error says where (its line) and, through ``what``, in whose words.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

try:
    from yaml.cyaml import CParser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    CParser = None

MAX_NESTING = 32  # a policy nests five levels deep; deeper documents would exhaust the parser's stack
# Python converts at most this many decimal digits to an integer (sys.int_info.default_max_str_digits);
# no column holds a tenth of it, so longer integers are refused here, where the path is known.
MAX_INTEGER_DIGITS = 4300
INT_TAG = "tag:yaml.org,2002:int"
PLAIN_TAGS = {
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:seq",
    "tag:yaml.org,2002:map",
}


class StrictYamlError(ValueError):
    """YAML that the strict loader refuses; ``line`` is 1-based where known, ``path`` (``routes[3].model``)
    where the refused value is known."""

    def __init__(self, message: str, line: int | None = None, path: str = "") -> None:
        self.line = line
        self.path = path
        located = f"{path}: {message}" if path else message
        super().__init__(f"line {line}: {located}" if line else located)


def _path_text(parts: list) -> str:
    text = ""
    for part in parts:
        if part is None:
            continue
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


class _Strict(Composer, SafeConstructor, Resolver):
    """The checks, made while nodes are composed (in Python, whichever parser reads the events)."""

    what = "documents"

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise StrictYamlError(f"YAML aliases (*name) are not allowed in {self.what}", event.start_mark.line + 1)
        event = self.peek_event()
        if getattr(event, "anchor", None):
            raise StrictYamlError(f"YAML anchors (&name) are not allowed in {self.what}", event.start_mark.line + 1)
        self._depth = getattr(self, "_depth", 0) + 1
        # Where the node sits: a mapping value is composed with its key node, a list item with its index.
        if not hasattr(self, "_path"):
            self._path = []
        self._path.append(index.value if isinstance(index, yaml.ScalarNode) else index)
        try:
            if self._depth > MAX_NESTING:
                raise StrictYamlError(f"the document nests deeper than {MAX_NESTING} levels", event.start_mark.line + 1)
            node = super().compose_node(parent, index)
            if isinstance(node, yaml.ScalarNode) and node.tag == INT_TAG:
                self._check_integer(node)
            return node
        finally:
            self._depth -= 1
            self._path.pop()

    def _check_integer(self, node: yaml.ScalarNode) -> None:
        digits = node.value.replace("_", "").lstrip("+-")
        if digits[:2].lower() in ("0x", "0o", "0b"):
            digits = digits[2:]
        digits = digits.replace(":", "")
        if len(digits) > MAX_INTEGER_DIGITS:
            raise StrictYamlError(
                f"an integer of {len(digits)} digits; at most {MAX_INTEGER_DIGITS} are accepted",
                node.start_mark.line + 1,
                _path_text(self._path),
            )

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise StrictYamlError(f"keys must be strings, not {key!r}", key_node.start_mark.line + 1)
            if key in seen:
                raise StrictYamlError(
                    f"duplicate key {key!r} (first on line {seen[key]})", key_node.start_mark.line + 1
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


_Strict.yaml_constructors = {
    tag: constructor for tag, constructor in yaml.SafeLoader.yaml_constructors.items() if tag in PLAIN_TAGS
}
_Strict.yaml_constructors["tag:yaml.org,2002:timestamp"] = yaml.SafeLoader.construct_yaml_str
_Strict.yaml_constructors[None] = yaml.SafeLoader.construct_undefined
_Strict.yaml_multi_constructors = {}


class _PythonLoader(_Strict, Reader, Scanner, Parser):
    """The checks over PyYAML's own scanner and parser: its messages say what it expected and found."""

    def __init__(self, stream) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)


if CParser is not None:

    class StrictLoader(_Strict, CParser):
        """The strict loader; subclasses name what they load (``what = "policies"``) for the messages.

        Events come from libyaml's scanner and parser (a 20-route policy loads in a quarter of the
        pure-Python time); a document it refuses is read again by ``_PythonLoader`` for the message."""

        def __init__(self, stream) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

else:  # pragma: no cover

    class StrictLoader(_PythonLoader):  # type: ignore[no-redef]
        """The strict loader; subclasses name what they load (``what = "policies"``) for the messages."""


def load(text: str, loader: type[StrictLoader] = StrictLoader) -> Any:
    """Parse ``text`` with ``loader``; every failure is a StrictYamlError with its line."""
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - a restricted SafeLoader
    except StrictYamlError:
        raise
    except yaml.YAMLError as refused:
        error = refused
    if not issubclass(loader, _PythonLoader):
        # Invalid YAML, said in PyYAML's words (what it expected, what it found), where it agrees.
        explaining = type(loader.__name__, (_PythonLoader,), {"what": loader.what})
        try:
            yaml.load(text, Loader=explaining)  # noqa: S506 - a restricted SafeLoader
        except StrictYamlError:
            raise
        except yaml.YAMLError as explained:
            error = explained
    raise _refusal(error) from error


def _refusal(error: yaml.YAMLError) -> StrictYamlError:
    if isinstance(error, yaml.constructor.ConstructorError):
        line = error.problem_mark.line + 1 if error.problem_mark else None
        return StrictYamlError(f"unsupported YAML: {error.problem}", line)
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    return StrictYamlError(f"invalid YAML: {problem}", mark.line + 1 if mark else None)
