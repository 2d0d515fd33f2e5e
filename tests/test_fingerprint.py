"""Code fingerprints and package versions of the stages (mobileforge.fingerprint).

Each test edits a copy of the real package in a temporary directory and compares the copy's
fingerprints with the original's, so what is asserted is what the workflow would replan.
"""

from __future__ import annotations

import re
import shutil
import sys
from importlib import metadata
from pathlib import Path

import pytest

from mobileforge import fingerprint
from tests.conftest import REPO, insert_into

PACKAGE = REPO / "mobileforge"


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    root = tmp_path / "mobileforge"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def codes(root: Path) -> dict[str, str]:
    return {stage: fingerprint.stage_fingerprint(stage, root).code for stage in STAGES}


STAGES = fingerprint.stage_names(PACKAGE)


def test_every_rule_stage_has_a_fingerprint():
    assert {"dataset", "train", "fuse", "quantize", "prune", "export_ptl", "export_pte",
            "evaluate", "benchmark", "summary", "plots"} <= set(STAGES)  # fmt: skip
    with pytest.raises(ValueError, match="has no stage .sensitivty."):
        fingerprint.stage_fingerprint("sensitivty")


def test_editing_quantize_static_changes_only_the_stages_that_call_it(copy):
    before = codes(PACKAGE)
    insert_into(copy / "quantize" / "fx.py", "quantize_static", "assert True")
    after = codes(copy)
    assert {stage for stage in STAGES if before[stage] != after[stage]} == {"quantize"}
    # fuse imports a module (chain) that imports quantize.fx, but never runs quantize_static.
    assert (
        "mobileforge.quantize.fx:quantize_static" not in fingerprint.stage_fingerprint("fuse").units
    )


def test_editing_a_shared_helper_changes_every_stage_that_reaches_it(copy):
    before = codes(PACKAGE)
    insert_into(copy / "files.py", "write_bytes_atomic", "assert True")
    changed = {stage for stage in STAGES if before[stage] != codes(copy)[stage]}
    assert {"dataset", "train", "fuse", "export_pte", "evaluate", "summary"} <= changed


def test_comments_docstrings_and_formatting_change_nothing(copy):
    before = codes(PACKAGE)
    path = copy / "quantize" / "fx.py"
    insert_into(path, "quantize_static", "# a comment explaining something")
    text = path.read_text().replace('"""', '"""Reworded. ', 1)  # the module docstring
    path.write_text(text.replace("):\n", "):  # trailing comment\n", 3) + "\n\n# the end\n")
    assert codes(copy) == before


def test_imports_inside_functions_strings_and_runners_count():
    train = fingerprint.stage_fingerprint("train").units
    # The zoo names its builders in strings: training runs them.
    assert "mobileforge.models.resnet:resnet18" in train
    assert "mobileforge.train:train_model" in train  # imported inside the stage function
    # The host benchmark runs ``python -m mobileforge.bench.host.runner`` in a subprocess.
    assert "mobileforge.bench.host.runner:main" in fingerprint.stage_fingerprint("benchmark").units
    # Every script runs its stage through the adapter.
    assert all("mobileforge.job:run" in fingerprint.stage_fingerprint(s).units for s in STAGES)


def test_packages_are_the_imported_distributions_with_their_installed_versions():
    packages = dict(fingerprint.stage_fingerprint("export_pte").packages)
    for name in ("torch", "executorch", "torchao", "coremltools"):
        assert packages[name] == metadata.version(name)
    assert not set(packages) & set(sys.stdlib_module_names)
    assert "executorch" not in dict(fingerprint.stage_fingerprint("export_ptl").packages)
    assert "pillow" in dict(fingerprint.stage_fingerprint("dataset").packages)  # folder images


def test_a_ptl_job_does_not_depend_on_executorch():
    # evaluate and the benchmarks run either runtime: the job's format decides which.
    for stage in ("evaluate", "benchmark"):
        assert "executorch" in fingerprint.job_toolchain(stage, {"fmt": "pte"})["packages"]
        assert "executorch" not in fingerprint.job_toolchain(stage, {"fmt": "ptl"})["packages"]
    xnnpack = fingerprint.job_toolchain("export_pte", {"variant": "fp32", "backend": "xnnpack"})
    coreml = fingerprint.job_toolchain("export_pte", {"variant": "fp32", "backend": "coreml"})
    assert "coremltools" in coreml["packages"] and "coremltools" not in xnnpack["packages"]
    assert xnnpack["code"] == coreml["code"]


def write_package(root: Path, files: dict[str, str]) -> Path:
    """A mobileforge package of ``files``; its registry names every function of stages/all.py."""
    stages = re.findall(r"^def (\w+)", files["stages/all.py"], re.M)
    registry = "STAGES = {" + ", ".join(f"{name!r}: 'all:{name}'" for name in stages) + "}\n"
    for name, text in {"__init__.py": "", "job.py": "def run(smk, stage):\n    stage(smk)\n",
                       "stages/__init__.py": registry, **files}.items():  # fmt: skip
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_names_resolve_through_aliases_tuples_conditionals_and_star_imports(tmp_path):
    files = {
        "stages/all.py": (
            "from mobileforge import helpers as h\n"
            "def attribute(job):\n    h.used()\n"
            "def shadowed(job):\n    h = 1\n    return h.used\n"
            "def star(job):\n    from mobileforge.extra import *\n    anything()\n"
            "def conditional(job):\n    h.maybe()\n"
        ),
        "helpers.py": (
            "import numpy\nA, B = 1, 2\ndef used():\n    return A\ndef unused():\n    return B\n"
            "if True:\n    def maybe():\n        return 0\n"
        ),
        "extra.py": "def anything():\n    return 1\n",
    }
    before = write_package(tmp_path / "a" / "mobileforge", files)
    base = {
        stage: fingerprint.stage_fingerprint(stage, before)
        for stage in fingerprint.stage_names(before)
    }
    assert "mobileforge.helpers:used" in base["attribute"].units
    assert "mobileforge.helpers:unused" not in base["attribute"].units
    assert "mobileforge.helpers:A" in base["attribute"].units  # tuple assignment
    assert dict(base["attribute"].packages) == {"numpy": metadata.version("numpy")}  # on import
    assert "mobileforge.helpers:used" not in base["shadowed"].units  # a local named h
    edits = {
        "attribute": ("helpers.py", "return A", "return A + 1"),
        "star": ("extra.py", "return 1", "return 2"),
        "conditional": ("helpers.py", "return 0", "return 3"),
    }
    for stage, (name, old, new) in edits.items():
        after = write_package(tmp_path / stage / "mobileforge", files)
        (after / name).write_text(files[name].replace(old, new))
        changed = {
            other
            for other in base
            if fingerprint.stage_fingerprint(other, after).code != base[other].code
        }
        assert stage in changed, (stage, changed)
        # Code run on import (the conditional definition) counts for every importer.
        assert ("shadowed" in changed) == (stage == "conditional"), (stage, changed)
