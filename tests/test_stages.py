"""The stage registry (mobileforge.stages): every rule runs the stage its toolchain names, and
every stage the registry names is a function of the package."""

from __future__ import annotations

import inspect
import re

import pytest

from mobileforge import fingerprint, stages
from tests.conftest import REPO

RULE = re.compile(r"^(?:rule|checkpoint) (\w+):\n(.*?)(?=^rule |^checkpoint |\Z)", re.M | re.S)


def workflow_rules() -> dict[str, str]:
    """Each rule of rules/*.smk and its text."""
    found = {}
    for path in sorted((REPO / "rules").glob("*.smk")):
        found.update(RULE.findall(path.read_text()))
    return found


def test_every_rule_runs_the_stage_its_toolchain_fingerprints():
    rules = workflow_rules()
    assert set(rules) == set(stages.RULES), "rules/*.smk and mobileforge.stages.RULES differ"
    for rule, text in rules.items():
        assert '"../scripts/stage.py"' in text, rule
        assert re.findall(r'toolchain\("(\w+)"\)', text) == [stages.RULES[rule]], rule


def test_every_registered_stage_is_a_stage_function_where_the_fingerprint_looks():
    homes = fingerprint.stage_homes()
    assert set(homes) == set(stages.STAGES) == set(stages.RULES.values())
    for stage, (module, name) in homes.items():
        function = stages.stage_function(stage)
        assert (function.__module__, function.__name__) == (module, name)
        assert list(inspect.signature(function).parameters) == ["job"]


def test_every_public_function_of_a_stage_module_is_registered():
    registered = {stages.stage_function(stage) for stage in stages.STAGES}
    for path in (REPO / "mobileforge" / "stages").glob("*.py"):
        if path.stem in ("__init__", "common"):
            continue
        module = __import__(f"mobileforge.stages.{path.stem}", fromlist=["_"])
        for name, value in vars(module).items():
            if inspect.isfunction(value) and value.__module__ == module.__name__:
                assert name.startswith("_") or value in registered, f"{path.stem}.{name}"


def test_an_unknown_rule_or_stage_is_named():
    with pytest.raises(ValueError, match="rule 'quantise' runs no stage"):
        stages.for_rule("quantise")
    with pytest.raises(ValueError, match="no stage 'quantise'"):
        stages.stage_function("quantise")
