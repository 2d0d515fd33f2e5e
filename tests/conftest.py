"""Shared fixtures: paths of the repository and a loaded default/tiny config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
TINY_CONFIG = REPO / "tests" / "configs" / "tiny.yaml"


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def tiny_raw() -> dict:
    return yaml.safe_load(TINY_CONFIG.read_text())


@pytest.fixture
def default_raw() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())
