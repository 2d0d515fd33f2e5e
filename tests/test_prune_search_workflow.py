"""``prune.amount: search`` through the real DAG: a tiny model, not fine-tuned after pruning,
loses 30-41 top-1 points at 0.4 of its channels and 59-61 at 0.6 (two training seeds, fp32
73-81 %), so with a 50-point budget the search (0.2 to 0.8 on a grid of 0.2, first 0.4) goes
higher once and stops where the budget is crossed, about 10 points from either verdict's edge
(what a different CPU's arithmetic moves is far less). Only the amounts tried are built, each
verdict a checkpoint the listings read step by step.
"""

from __future__ import annotations

import copy
import re
import time

import pytest
import yaml

from mobileforge import files, records
from tests.conftest import TIMINGS, snakemake
from tests.workflow_helpers import planned_outputs

pytestmark = pytest.mark.slow

SEARCH_RUN = {
    "defaults": {
        "input_shape": [1, 3, 16, 16],
        "train": {"epochs": 4, "batch_size": 32, "lr": 0.05, "seed": 0, "threads": 1},
        # no int8 budget: no sensitivity rankings to build
        "quantize": {"calibration_batches": 2, "batch_size": 16, "accuracy_budget": None},
        "prune": {
            "method": "channel",
            "amount": "search",
            "round_to": None,
            "finetune": {"epochs": 0},
            "search": {"low": 0.2, "high": 0.8, "step": 0.2, "max_points": 3},
        },
    },
    "models": {"alpha": {"arch": "tinycnn", "kwargs": {"width": 16}}},
    "dataset": {"name": "shapes", "train_size": 1024, "calib_size": 64, "eval_size": 128},
    "variants": ["fp32", "int8_pruned"],
    "formats": ["ptl", "pte"],
    "devices": {"host": {"kind": "host", "threads": 1}},
    "benchmark": {"warmup": 1, "iterations": 5, "repeats": 2},
    "selection": {"accuracy_budget": 50.0},
}
OUTCOME = "results/alpha/prune_search.json"


def _pruned(planned: set[str]) -> set[str]:
    return {path for path in planned if path.startswith("results/alpha/pruned-channel-")}


def test_a_search_stops_where_the_budget_is_crossed_building_only_the_amounts_tried(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(SEARCH_RUN))
    # Before any verdict the plan holds the first amount only.
    assert _pruned(planned_outputs(tmp_path, config)) == {"results/alpha/pruned-channel-0.4.pt"}

    started = time.perf_counter()
    snakemake(tmp_path, config, OUTCOME)
    TIMINGS["prune search of a tiny model, 2 amounts (--cores 2)"] = time.perf_counter() - started

    outcome = records.read(records.PruneSearch, tmp_path / OUTCOME)
    steps = outcome["steps"]
    assert [(s["point"], s["within_budget"]) for s in steps] == [
        ("channel-0.4", True),
        ("channel-0.6", False),
    ]
    assert outcome["chosen"] == "channel-0.4" and outcome["chosen_amount"] == 0.4
    assert "between 0.4 (within the budget) and 0.6 (over it)" in outcome["stopped"]
    assert steps[1]["tried_before"] == [{"amount": 0.4, "within_budget": True}]
    assert steps[0]["interval"] == [0.6, 0.8] and steps[1]["interval"] is None
    for step in steps:
        # every int8 artifact of the point, each against the fp32 artifact of its format
        assert {(a["format"], a["backend"]) for a in step["artifacts"]} == {
            ("ptl", "cpu"),
            ("pte", "xnnpack"),
        }
        for entry in step["artifacts"]:
            stem = entry["artifact"].rsplit("/", 1)[1].rsplit(".", 1)[0]
            evaluation = files.read_json(
                tmp_path / f"results/alpha/eval/{entry['format']}/{stem}.json"
            )
            assert entry["accuracy"] == evaluation["accuracy"]
            assert entry["accuracy_delta"] == entry["accuracy"] - entry["fp32_accuracy"]
            assert entry["within_budget"] == (entry["accuracy_delta"] >= -50.0)
        assert step["within_budget"] == all(a["within_budget"] for a in step["artifacts"])
    # Only the amounts tried were pruned.
    pruned = {p.name for p in (tmp_path / "results/alpha").glob("pruned-channel-*.pt")}
    assert pruned == {"pruned-channel-0.4.pt", "pruned-channel-0.6.pt"}

    # The default target now lists both tried amounts' artifacts (benchmarks, the summary) and
    # rebuilds nothing of the search.
    planned = planned_outputs(tmp_path, config)
    assert not _pruned(planned)
    assert not [path for path in planned if "/prune_search/" in path]
    for point in ("channel-0.4", "channel-0.6"):
        assert f"results/alpha/bench/pte/int8_pruned-{point}.xnnpack.host.json" in planned
    assert not [path for path in planned if "channel-0.2" in path or "channel-0.8" in path]

    # At most one amount: the outcome is redone from the first verdict, nothing else.
    one = copy.deepcopy(SEARCH_RUN)
    one["defaults"]["prune"]["search"]["max_points"] = 1
    config.write_text(yaml.safe_dump(one))
    assert _jobs(snakemake(tmp_path, config, "--dry-run", OUTCOME)) == {"prune_search": 1}


def _jobs(dry_run: str) -> dict[str, int]:
    """The job counts of a dry run's "Job stats" table (the total left out)."""
    table = dry_run.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    counts = {}
    for line in table.splitlines():
        match = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if match and match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts
