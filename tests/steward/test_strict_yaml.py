"""The strict loader reads events from libyaml and composes them in Python: the same values and the
same refusals, in the same words, as over PyYAML's own parser."""

from __future__ import annotations

import pytest

from steward import strict_yaml
from steward.strict_yaml import StrictLoader, StrictYamlError, load

POLICY = "default: deny\nroutes:\n" + "".join(
    f"  - task: task-{n}\n    classification: internal\n    model: acme/small-{n}@1\n"
    f"    fallbacks: [acme/small-{n + 1}@1]\n    escalation:\n      to: acme/large@1\n"
    f"      when: [error]\n      max_rate_bp: 500\n"
    for n in range(20)
)

DOCUMENTS = [
    POLICY,
    "t: 2026-01-01\nn: ~\nb: yes\nf: 1.5\ni: 0x1f\n",
    "a: 1\na: 2\n",
    "a: &x 1\nb: *x\n",
    "a: [1, 2\n",
    "a: !!python/object x\n",
    "? [1]\n: 2\n",
    "a:\n  b: 1\n c: 2\n",
    "x: " + "1" * 5000 + "\n",
    "\t- a\n",
    "a: 'b\n",
    "default: deny\n---\nroutes: []\n",
    "[" * 40 + "]" * 40 + "\n",
]


def outcome(text: str, loader) -> tuple:
    try:
        return ("loaded", load(text, loader))
    except StrictYamlError as error:
        return ("refused", str(error), error.line, error.path)


@pytest.mark.parametrize("text", DOCUMENTS)
def test_libyaml_events_load_and_refuse_as_pyyaml_does(text):
    assert outcome(text, StrictLoader) == outcome(text, strict_yaml._PythonLoader)


def test_the_strict_loader_reads_libyaml_events():
    assert strict_yaml.CParser is not None and issubclass(StrictLoader, strict_yaml.CParser)
    assert load(POLICY)["routes"][19]["escalation"]["max_rate_bp"] == 500
