"""``prune.amount: search``: the bisection over given verdicts (mobileforge.prune.search), what
the plan lists of a search before and after its verdicts, its params, its config errors, the
budget test it shares with ``best``, and its section of summary.md. Torch-free and quick; the
real DAG runs in tests/test_prune_search_workflow.py."""

from __future__ import annotations

import copy
import math

import pytest

from mobileforge import budget, params, plan, summary_tables
from mobileforge.config import ConfigError, resolve_config
from mobileforge.prune.search import (
    Search,
    best,
    history_before,
    next_amount,
    remaining,
    stopped,
    tried,
)

DEFAULT = Search(low=0.3, high=0.9, step=0.05, max_points=4)


def _threshold(limit: float):
    """Verdicts of a model whose int8 artifacts stay within the budget up to ``limit``."""
    return lambda amount: amount <= limit + 1e-9


def test_the_first_amount_is_the_grid_midpoint_and_each_verdict_halves_what_is_left():
    assert next_amount(DEFAULT, []) == 0.6
    # within at 0.6: higher, the midpoint of 0.65..0.9; over at 0.75: lower, 0.65..0.7
    assert tried(DEFAULT, _threshold(0.7)) == [0.6, 0.75, 0.65, 0.7]
    assert tried(DEFAULT, _threshold(0.42)) == [0.6, 0.4, 0.5, 0.45]
    history = [(0.6, True), (0.75, False)]
    assert remaining(DEFAULT, history) == (0.65, 0.7)
    assert stopped(DEFAULT, history) is None


def test_the_search_stops_where_the_budget_is_crossed_for_every_threshold():
    """With enough points, the answer is the largest grid amount within the budget, wherever
    the budget is crossed, found in about log2 of the grid's size verdicts."""
    search = Search(low=0.1, high=0.9, step=0.1, max_points=10)
    grid = [round(0.1 * i, 9) for i in range(1, 10)]
    for limit in [0.05, *grid]:
        verdict = _threshold(limit)
        amounts = tried(search, verdict)
        history = [(amount, verdict(amount)) for amount in amounts]
        within = [amount for amount in grid if amount <= limit + 1e-9]
        assert best(search, history) == (max(within) if within else None), limit
        assert len(amounts) <= math.ceil(math.log2(len(grid) + 1)), (limit, amounts)
        assert len(set(amounts)) == len(amounts)
        assert stopped(search, history) is not None
        if within and within[-1] < grid[-1]:  # crossed inside the range: both sides tried
            assert within[-1] in amounts and round(within[-1] + 0.1, 9) in amounts


def test_max_points_stops_early_with_the_best_so_far():
    search = Search(low=0.3, high=0.9, step=0.05, max_points=2)
    amounts = tried(search, _threshold(0.7))
    assert amounts == [0.6, 0.75]
    history = [(0.6, True), (0.75, False)]
    assert best(search, history) == 0.6
    assert stopped(search, history) == "max_points (2) amounts tried"


def test_a_search_over_the_budget_everywhere_says_so():
    history = [(a, False) for a in tried(DEFAULT, _threshold(0.0))]
    assert [a for a, _ in history] == [0.6, 0.4, 0.3]
    assert best(DEFAULT, history) is None
    assert "lowest amount, 0.3, is over" in stopped(DEFAULT, history)


def test_unknown_verdicts_list_the_next_amount_to_build_and_nothing_past_it():
    verdicts = {0.6: True}
    assert tried(DEFAULT, verdicts.get) == [0.6, 0.75]
    assert history_before(DEFAULT, 0.75, verdicts.get) == [(0.6, True)]
    with pytest.raises(ValueError, match="does not try 0.45"):
        history_before(DEFAULT, 0.45, verdicts.get)


def _search_config(tiny_raw: dict, **search) -> dict:
    raw = copy.deepcopy(tiny_raw)
    raw["defaults"]["prune"] = {"method": "channel", "amount": "search", "search": search}
    return resolve_config(raw)


def test_the_plan_lists_the_first_amount_before_any_verdict_and_the_path_after(tiny_raw):
    config = _search_config(tiny_raw)
    before = {a.variant for a in plan.artifacts(config, "alpha")}
    assert {v for v in before if "pruned" in v} == {"int8_pruned-channel-0.6"}
    verdicts = {0.6: True, 0.75: False}
    found = plan.auto_artifacts(config, "alpha", plan.undecided, lambda m, a: verdicts.get(a))
    assert {a.variant for a in found} == {"int8_pruned-channel-0.75", "int8_pruned-channel-0.65"}
    assert all(a not in before for a in found)
    steps = plan.search_steps(config, "alpha", lambda m, a: verdicts.get(a))
    assert steps == [
        "results/alpha/prune_search/channel-0.6.json",
        "results/alpha/prune_search/channel-0.75.json",
        "results/alpha/prune_search/channel-0.65.json",
    ]
    assert plan.search_paths(config) == ["results/alpha/prune_search.json"]
    # the verdict on 0.65 reads 0.75's (the one before it) and both formats' int8 and fp32
    point = plan.prune_point(config, "alpha", "int8_pruned-channel-0.65")
    inputs = plan.search_step_inputs(config, "alpha", point, lambda m, a: verdicts.get(a))
    assert inputs["previous"] == ["results/alpha/prune_search/channel-0.75.json"]
    assert sorted(inputs["evaluations"]) == [
        "results/alpha/eval/pte/int8_pruned-channel-0.65.xnnpack.json",
        "results/alpha/eval/ptl/int8_pruned-channel-0.65.x86.cpu.json",
    ]
    assert sorted(inputs["reference_evaluations"]) == [
        "results/alpha/eval/pte/fp32.xnnpack.json",
        "results/alpha/eval/ptl/fp32.cpu.json",
    ]
    with pytest.raises(ValueError, match="models.alpha.prune.search"):
        plan.search_step_inputs(
            config, "alpha", plan.PrunePoint("channel", 0.4), lambda m, a: verdicts.get(a)
        )
    # a profile finds the fp32 stage of any amount the search may try
    assert (
        plan.float_model_path(config, "alpha", "ptl", "int8_pruned-channel-0.65.x86.cpu")
        == "results/alpha/pruned-channel-0.65.pt"
    )


def test_without_pruned_variants_a_search_asks_for_no_verdict(tiny_raw):
    raw = copy.deepcopy(tiny_raw)
    raw["variants"] = ["fp32", "int8"]
    raw["defaults"]["prune"] = {"method": "channel", "amount": "search"}
    config = resolve_config(raw)

    def never(model: str, amount: float) -> bool:
        raise AssertionError(f"asked for the verdict on {amount}")

    assert plan.auto_artifacts(config, "alpha", plan.undecided, never) == []
    assert not [path for path in plan.sensitivities(config, "alpha", never) if "pruned" in path]
    assert plan.search_paths(config) == []


def test_a_model_that_searches_nothing_has_no_verdicts(tiny_raw):
    config = resolve_config(tiny_raw)  # amount 0.3
    with pytest.raises(ValueError, match=r"models\.alpha\.prune\.amount is not search"):
        plan.search_steps(config, "alpha", plan.unsearched)
    with pytest.raises(ValueError, match=r"models\.alpha\.prune\.amount is not search"):
        point = plan.prune_point(config, "alpha", "int8_pruned-channel-0.3")
        plan.search_step_inputs(config, "alpha", point, plan.unsearched)


def test_a_searched_label_resolves_to_its_amount_on_the_grid_within_the_bounds(tiny_raw):
    config = _search_config(tiny_raw)
    point = plan.prune_point(config, "alpha", "int8_pruned-channel-0.85")
    assert (point.method, point.amount, point.label) == ("channel", 0.85, "channel-0.85")
    for variant in ("int8_pruned-channel-0.62", "int8_pruned-channel-0.95",
                    "int8_pruned-channel-0.25", "int8_pruned-l1_unstructured-0.6"):  # fmt: skip
        with pytest.raises(KeyError, match=r"models\.alpha\.prune\.search"):
            plan.prune_point(config, "alpha", variant)


def test_search_settings_are_checked_naming_the_key(tiny_raw):
    with pytest.raises(ConfigError, match=r"models\.alpha\.prune\.method.*channel amounts only"):
        raw = copy.deepcopy(tiny_raw)
        raw["defaults"]["prune"]["amount"] = "search"  # with method [l1_unstructured, channel]
        resolve_config(raw)
    with pytest.raises(ConfigError, match=r"models\.alpha\.prune\.search: .*multiples of step"):
        _search_config(tiny_raw, low=0.33)
    with pytest.raises(ConfigError, match=r"models\.alpha\.prune\.search: low 0.8 is above"):
        _search_config(tiny_raw, low=0.8, high=0.5)
    with pytest.raises(ConfigError, match="prune"):
        raw = copy.deepcopy(tiny_raw)
        raw["defaults"]["prune"]["amount"] = "bisect"
        resolve_config(raw)


def test_max_points_reruns_the_outcome_but_not_the_verdicts_nor_the_pruning(tiny_raw):
    one, two = _search_config(tiny_raw, max_points=1), _search_config(tiny_raw, max_points=2)
    assert params.prune_search_step(one, "alpha", "channel-0.6") == params.prune_search_step(
        two, "alpha", "channel-0.6"
    )
    assert params.channel_prune(one, "alpha", "channel-0.6") == params.channel_prune(
        two, "alpha", "channel-0.6"
    )
    assert params.prune_search(one, "alpha") != params.prune_search(two, "alpha")
    wider = _search_config(tiny_raw, high=0.95)
    assert params.prune_search_step(wider, "alpha", "channel-0.6") != params.prune_search_step(
        two, "alpha", "channel-0.6"
    )


def test_within_budget_is_the_test_best_applies():
    assert budget.within(-1.0, 1.0) and budget.within(0.5, 1.0)
    assert not budget.within(-1.01, 1.0)
    assert not budget.within(None, 1.0) and not budget.within(float("nan"), 1.0)
    assert budget.accuracy_delta(90.0, 91.5) == -1.5
    assert budget.accuracy_delta(None, 91.5) is None


def test_summary_md_shows_every_amount_tried_its_verdict_and_where_it_stopped():
    def step(amount: float, within: bool, delta: float) -> dict:
        entry = {"format": "pte", "backend": "xnnpack", "engine": None, "accuracy_delta": delta}
        return {"point": f"channel-{amount:g}", "within_budget": within, "artifacts": [entry],
                "interval": None}  # fmt: skip

    record = {
        "model": "alpha", "low": 0.2, "high": 0.8, "step": 0.2, "max_points": 3,
        "accuracy_budget": 5.0, "chosen": "channel-0.4", "chosen_amount": 0.4,
        "stopped": "no untried amount is left between 0.4 (within the budget) and 0.6 (over it)",
        "steps": [step(0.4, True, 0.0), step(0.6, False, -12.5)],
    }  # fmt: skip
    text = summary_tables.to_markdown([summary_tables.search_section(record)])
    assert "## Prune search: alpha" in text
    assert "stopped at **channel-0.4**" in text
    assert "| 1 | channel-0.4 (chosen) | within | .pte xnnpack 0 | nothing |" in text
    assert "| 2 | channel-0.6 | over the budget | .pte xnnpack -12.5 | nothing |" in text


def test_summary_rows_of_a_searched_amount_say_its_verdict_and_the_answer():
    import pandas as pd

    from mobileforge.summary import mark_searches

    frame = pd.DataFrame(
        {
            "model": ["alpha", "alpha", "alpha", "beta"],
            "variant": ["fp32", "int8_pruned-channel-0.4", "int8_pruned-channel-0.6",
                        "int8_pruned-channel-0.4"],
            "note": ["", "", "unstable", ""],
        }
    )  # fmt: skip
    search = {"model": "alpha", "chosen": "channel-0.4", "steps": [
        {"point": "channel-0.4", "within_budget": True},
        {"point": "channel-0.6", "within_budget": False},
    ]}  # fmt: skip
    notes = list(mark_searches(frame, [search])["note"])
    assert notes == [
        "",
        "prune search: amount 1 of 2 tried, within the budget, the search's answer",
        "unstable; prune search: amount 2 of 2 tried, over the budget",
        "",
    ]
