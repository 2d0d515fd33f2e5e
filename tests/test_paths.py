"""Paths and names in one place (mobileforge.layout): the vocabulary is the config schema's, the
rules and Python take every results/, logs/ and benchmarks/ path from layout's templates, and
the wildcard patterns match every name the plan produces."""

from __future__ import annotations

import ast
import re

import pytest
import yaml

from mobileforge import layout, plan
from mobileforge.config import resolve_config
from tests.conftest import REPO

SCHEMA = yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())
PATH_LITERAL = re.compile(r"""["'](?:results|logs|benchmarks)/""")


def _enum(node: dict) -> tuple[str, ...]:
    if "enum" in node:
        return tuple(node["enum"])
    if "items" in node:
        return _enum(node["items"])
    return next(_enum(option) for option in node["oneOf"] if "enum" in option)


def test_the_vocabulary_is_the_config_schema_s():
    top, defs = SCHEMA["properties"], SCHEMA["$defs"]
    assert layout.FORMATS == _enum(top["formats"])
    assert layout.VARIANTS == _enum(top["variants"])
    assert layout.DATASETS == _enum(top["dataset"]["properties"]["name"])
    for fmt in layout.FORMATS:
        assert layout.BACKENDS[fmt] == _enum(top["backends"]["properties"][fmt])
        assert set(layout.INT8_BACKENDS[fmt]) <= set(layout.BACKENDS[fmt])
    assert layout.ENGINES == _enum(defs["device"]["properties"]["engine"])
    assert layout.PRUNE_METHODS == _enum(defs["prune"]["properties"]["method"])
    assert layout.QUANT_MODES == _enum(defs["quantize"]["properties"]["mode"])


def _python_path_literals(path) -> list[str]:
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and node.value.startswith(("results/", "logs/", "benchmarks/"))
    ]


def test_no_path_literal_lives_outside_the_layout_module():
    found = {}
    for path in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]:
        code = "\n".join(line.split("#")[0] for line in path.read_text().splitlines())
        if PATH_LITERAL.search(code):
            found[path.name] = PATH_LITERAL.findall(code)
    for path in sorted((REPO / "mobileforge").rglob("*.py")):
        if path.name != "layout.py" and (literals := _python_path_literals(path)):
            found[str(path.relative_to(REPO))] = literals
    assert not found, f"path literals outside mobileforge/layout.py: {found}"


def test_every_name_the_plan_produces_matches_its_wildcard_pattern():
    raw = yaml.safe_load((REPO / "config.yaml").read_text())
    raw["models"]["tinycnn"]["prune"] = {"method": ["l1_unstructured", "channel"],
                                         "amount": [0.3, 0.5]}  # fmt: skip
    config = resolve_config(raw)
    artifacts = plan.all_artifacts(config)
    assert artifacts
    patterns = {name: re.compile(f"(?:{pattern})") for name, pattern in layout.PATTERNS.items()}
    for artifact in artifacts:
        assert patterns["variant"].fullmatch(artifact.variant), artifact
        assert patterns["fmt"].fullmatch(artifact.fmt), artifact
        if artifact.variant != "fp32":
            assert patterns["ivariant"].fullmatch(artifact.variant), artifact
        if artifact.engine:
            assert patterns["engine"].fullmatch(artifact.engine), artifact
    channel = [a.variant for a in artifacts if "channel" in a.variant]
    unstructured = [a.variant for a in artifacts if "l1_unstructured" in a.variant]
    assert channel and all(patterns["qvariant"].fullmatch(v) for v in channel)
    assert unstructured and all(patterns["uvariant"].fullmatch(v) for v in unstructured)
    assert not any(patterns["qvariant"].fullmatch(v) for v in unstructured)


def test_fill_replaces_the_named_wildcards_and_refuses_unknown_ones():
    assert (
        layout.fill(layout.INT8, variant="{qvariant}") == "results/{model}/{qvariant}.{engine}.pt"
    )
    assert layout.fill(layout.FUSED, model="m") == "results/m/fused.pt"
    with pytest.raises(KeyError, match="no wildcard \\['backend'\\]"):
        layout.fill(layout.FUSED, backend="cpu")
