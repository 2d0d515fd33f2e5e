"""Recovery to the budget and gradual pruning of channel points: the held-back part of the train
split, a fine-tune that stops once within budget (or on patience, or at its ceiling) with its
best epoch's weights, and pruning in steps that ends where one step does."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from mobileforge import records
from mobileforge import train as training
from mobileforge.data import make_shapes
from mobileforge.data.holdout import holdout_indices, split_holdout
from mobileforge.models import build_model
from mobileforge.prune.channel import channel_counts, prune_channels
from mobileforge.prune.finetune import prune_and_finetune, recover_to_budget
from mobileforge.train import evaluate_accuracy, train_model

SHAPE = (1, 3, 16, 16)
QUIET = {"log": lambda _: None}


@pytest.fixture(scope="module")
def data() -> dict:
    raw = make_shapes(16, 16, num_classes=4, seed=0, train_size=320, calib_size=8, eval_size=32)
    return split_holdout(raw, 0.2)


@pytest.fixture(scope="module")
def teacher(data) -> torch.nn.Module:
    """A tinycnn trained (without the held-back part) well above chance."""
    torch.manual_seed(0)
    model = build_model("tinycnn", 4, {})
    train_model(model, data, epochs=6, batch_size=32, lr=0.1, seed=0, **QUIET)
    return model.eval()


def _settings(**changes) -> dict:
    finetune = {"epochs": 4, "patience": 2, "int8_margin": 0.5, "step_epochs": 1, "lr": 0.05,
                "temperature": 2.0, "distillation": 0.5}  # fmt: skip
    finetune.update(changes.pop("finetune", {}))
    settings = {
        "amount": 0.5,
        "scope": "layer",
        "round_to": None,
        "steps": 1,
        "accuracy_budget": 1.0,
        "finetune": finetune,
        "train": {
            "batch_size": 32,
            "momentum": 0.9,
            "weight_decay": 5e-4,
            "seed": 0,
            "holdout": 0.2,
        },  # fmt: skip
    }
    settings.update(changes)
    return settings


def _pruned(teacher: torch.nn.Module, amount: float = 0.5) -> torch.nn.Module:
    model = copy.deepcopy(teacher)
    prune_channels(model, torch.zeros(SHAPE), amount, **QUIET)
    return model


def _holdout_acc(model: torch.nn.Module, data: dict) -> float:
    return evaluate_accuracy(model, data["holdout_x"], data["holdout_y"])


# ------------------------------------------------------------------------ the held-back part


def test_holdout_is_deterministic_disjoint_stratified_and_chosen_by_the_dataset_seed():
    raw = make_shapes(16, 16, num_classes=4, seed=0, train_size=203, calib_size=8, eval_size=8)
    y = raw["train_y"]
    kept, held = holdout_indices(y, 0.1, seed=0)
    again_kept, again_held = holdout_indices(y, 0.1, seed=0)
    assert torch.equal(kept, again_kept) and torch.equal(held, again_held)
    assert sorted(kept.tolist() + held.tolist()) == list(range(len(y)))  # a partition
    for k in range(4):  # each class holds back its own share, rounded half up
        in_class = int((y == k).sum())
        assert int((y[held] == k).sum()) == math.floor(in_class * 0.1 + 0.5)
    assert not torch.equal(holdout_indices(y, 0.1, seed=1)[1], held)
    # split_holdout draws with the dataset's seed, and training sees none of the held images.
    split = split_holdout(raw, 0.1)
    assert torch.equal(split["holdout_y"], y[held])
    assert torch.equal(split["train_x"], raw["train_x"][kept])
    seen = {tuple(row.flatten().tolist()) for row in split["train_x"]}
    assert not any(tuple(row.flatten().tolist()) in seen for row in split["holdout_x"])
    for key in ("calib_x", "eval_x", "eval_y"):
        assert split[key] is raw[key]  # the other splits are left alone
    off = split_holdout(raw, 0.0)
    assert off["train_x"] is raw["train_x"] and len(off["holdout_y"]) == 0
    with pytest.raises(ValueError, match="train.holdout"):
        holdout_indices(y, 0.6 * 2, seed=0)


def test_training_scores_the_held_back_part_every_epoch(data):
    torch.manual_seed(0)
    model = build_model("tinycnn", 4, {})
    lines: list[str] = []
    history = train_model(model, data, epochs=2, batch_size=32, lr=0.1, seed=0, log=lines.append)
    assert [e["holdout_acc"] for e in history["epochs"]][-1] == _holdout_acc(model, data)
    assert "holdout_acc" in lines[1] and "eval_acc" in lines[1]
    without = {k: data[k] for k in ("train_x", "train_y", "holdout_x", "holdout_y")}
    train_model(model, without, epochs=1, batch_size=32, lr=0.1, seed=0, log=lines.append)
    assert "holdout_acc" in lines[-2] and "nan" not in lines[-2] and "eval_acc" not in lines[-2]


# ------------------------------------------------------------------------ recovery to budget


def test_recovery_stops_within_budget_before_the_ceiling(data, teacher):
    reference = _holdout_acc(teacher, data)
    model = _pruned(teacher)
    # A budget this wide is met by the first epoch: an easy task stops there.
    settings = _settings(accuracy_budget=100.0, finetune={"epochs": 5})
    record = recover_to_budget(model, teacher, data, settings, reference, **QUIET)
    assert record["stopped"] == "within_budget"
    assert record["epochs_used"] == record["best_epoch"] == 1 < record["ceiling"] == 5
    assert record["target_acc"] == reference - 99.5
    assert _holdout_acc(model, data) == record["history"][0]["holdout_acc"]


def test_recovery_goes_on_while_improving_and_keeps_its_best_epoch(data, teacher):
    model = _pruned(teacher, 0.7)
    # Out of reach (above 100 %): only patience or the ceiling can end it.
    settings = _settings(finetune={"epochs": 6, "patience": 2, "lr": 0.2})
    record = recover_to_budget(model, teacher, data, settings, 101.0, **QUIET)
    scores = [epoch["holdout_acc"] for epoch in record["history"]]
    # This pruned model improves epoch after epoch: it runs to the ceiling.
    assert record["stopped"] == "ceiling" and len(scores) == record["epochs_used"] == 6
    assert scores[-1] > scores[0]
    # It never stopped while the last `patience` epochs had improved on the best before them.
    for used in range(1, len(scores)):
        best_at = scores.index(max(scores[:used])) + 1
        assert used - best_at < 2, f"should have stopped after epoch {used}"
    # The model holds the best epoch's weights (the first of a tie), checked by re-scoring.
    assert record["best_epoch"] == scores.index(max(scores)) + 1
    assert _holdout_acc(model, data) == max(scores)
    # Run to its ceiling, it is the fixed-epoch fine-tune bit for bit (no stopping at all):
    # scoring the held-back part after each epoch changes nothing of the training.
    fixed = _pruned(teacher, 0.7)
    recover_to_budget(fixed, teacher, data, settings, None, **QUIET)
    assert record["best_epoch"] == 6
    for key, value in fixed.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_recovery_stops_on_patience_when_the_score_stalls(data, teacher):
    model = _pruned(teacher, 0.5)
    settings = _settings(finetune={"epochs": 8, "patience": 1, "lr": 0.05})
    record = recover_to_budget(model, teacher, data, settings, 101.0, **QUIET)
    scores = [epoch["holdout_acc"] for epoch in record["history"]]
    assert record["stopped"] == "patience" and record["epochs_used"] < 8
    assert scores[-1] < max(scores[:-1])  # so the re-score below tells the epochs apart
    # Not the last epoch's weights: the best's, checked by re-scoring.
    assert record["best_epoch"] == scores.index(max(scores)) + 1 < record["epochs_used"]
    assert _holdout_acc(model, data) == max(scores)


def test_a_tie_keeps_the_earlier_epoch(data, teacher, monkeypatch):
    # A tie in real training depends on the CPU's arithmetic: the held-back scores are given
    # here (the fine-tune has no eval split: None), so the rule itself is what is tested.
    given = iter([50.0, 50.0, 40.0, 40.0])
    monkeypatch.setattr(
        training, "_score", lambda model, x, y, batch: math.nan if x is None else next(given)
    )
    model = _pruned(teacher, 0.7)
    settings = _settings(finetune={"epochs": 8, "patience": 1, "lr": 0.2})
    record = recover_to_budget(model, teacher, data, settings, 101.0, **QUIET)
    scores = [epoch["holdout_acc"] for epoch in record["history"]]
    assert scores == [50.0, 50.0] and record["stopped"] == "patience"  # a tie, then patience
    assert record["best_epoch"] == 1


def test_without_a_held_back_part_the_fine_tune_runs_its_ceiling(data, teacher):
    model = _pruned(teacher)
    empty = {**data, "holdout_x": data["holdout_x"][:0], "holdout_y": data["holdout_y"][:0]}
    record = recover_to_budget(model, teacher, empty, _settings(), None, **QUIET)
    assert record["stopped"] == "ceiling" and record["epochs_used"] == record["best_epoch"] == 4
    assert record["target_acc"] is None
    assert all(epoch["holdout_acc"] is None for epoch in record["history"])


# ------------------------------------------------------------------------ gradual pruning


def test_one_step_removes_the_channels_it_always_did(teacher):
    """steps 1 is Torch-Pruning's one-shot pruner with the arguments of before gradual pruning:
    the same channels go (so the same weights stay)."""
    import torch_pruning as tp

    model, before = copy.deepcopy(teacher), copy.deepcopy(teacher)
    record = prune_channels(model, torch.zeros(SHAPE), 0.5, round_to=8, **QUIET)
    layers = [m for m in before.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    tp.pruner.BasePruner(
        before,
        torch.zeros(SHAPE),
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=0.5,
        global_pruning=False,
        ignored_layers=[layers[0], layers[-1]],
        round_to=8,
    ).step()
    assert channel_counts(model) == channel_counts(before)
    for key, value in before.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert [step["step"] for step in record["steps"]] == [1]
    assert record["steps"][0]["macs"] == record["after"]["macs"]


def test_gradual_pruning_ends_at_the_counts_of_one_step_and_records_each_step(data, teacher):
    example = torch.zeros(SHAPE)
    results = {}
    for steps in (1, 3):
        settings = _settings(steps=steps, amount=0.6, round_to=4, finetune={"epochs": 1})
        fused, record = prune_and_finetune(copy.deepcopy(teacher), example, data, settings,
                                           **QUIET)  # fmt: skip
        records.check(records.ChannelPruneRecord, record, f"steps {steps}")
        results[steps] = (channel_counts(fused), record)
    assert results[3][0] == results[1][0]
    record = results[3][1]
    assert [s["step"] for s in record["steps"]] == [1, 2, 3]
    assert [s["amount"] for s in record["steps"]] == pytest.approx([0.2, 0.4, 0.6])
    macs = [s["macs"] for s in record["steps"]]
    assert macs[0] > macs[1] > macs[2] == results[1][1]["steps"][0]["macs"]
    # One epoch after each of the first two steps, then the recovery of the last.
    assert [(e["step"], e["epoch"]) for e in record["recovery"]["history"]] == [
        (1, 1), (2, 1), (3, 1)
    ]  # fmt: skip


def test_gradual_pruning_leaves_whole_what_one_step_leaves_whole():
    """MobileNetV2 0.5 at 0.7 with round_to 8: one step leaves its 16-channel layers whole (4
    kept rounds to none), which a first step of three (to 12, rounded to 8) would have cut."""
    torch.manual_seed(0)
    model = build_model("mobilenet_v2", 10, {"width_mult": 0.5})
    example = torch.zeros(1, 3, 32, 32)
    counts, macs = {}, {}
    for steps in (1, 3):
        pruned = copy.deepcopy(model)
        record = prune_channels(pruned, example, 0.7, round_to=8, steps=steps, **QUIET)
        counts[steps], macs[steps] = channel_counts(pruned), record["after"]["macs"]
    assert counts[3] == counts[1] and macs[3] == macs[1]
    assert counts[1]["features.2.conv.2"]["out_channels"] == 16


def test_the_record_is_declared_and_a_renamed_key_fails(data, teacher):
    _, record = prune_and_finetune(copy.deepcopy(teacher), torch.zeros(SHAPE), data,
                                   _settings(finetune={"epochs": 1}), **QUIET)  # fmt: skip
    records.check(records.ChannelPruneRecord, record, "pruned")
    renamed = copy.deepcopy(record)
    renamed["recovery"]["history"][0]["heldout_acc"] = renamed["recovery"]["history"][0].pop(
        "holdout_acc"
    )
    with pytest.raises(records.RecordError, match="holdout_acc"):
        records.check(records.ChannelPruneRecord, renamed, "pruned")
