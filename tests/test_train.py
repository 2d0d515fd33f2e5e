"""Training: determinism, learning, accuracy measurement and safe checkpoint loading."""

import os
import re

import pytest
import torch

from mobileforge.data import make_shapes
from mobileforge.models import build_model
from mobileforge.train import (
    evaluate_accuracy,
    load_user_checkpoint,
    train_model,
    training_trend,
)
from tests.exploit import Exploit, write_payload


@pytest.fixture(scope="module")
def tiny_data():
    return make_shapes(16, 16, num_classes=4, seed=0, train_size=96, calib_size=8, eval_size=32)


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_accuracy_counts_top1_over_batches():
    y = torch.tensor([0, 1, 2, 0, 1])
    predicted = torch.tensor([0, 1, 0, 0, 2])  # 3 of 5 right

    def forward(batch):
        return torch.nn.functional.one_hot(predicted[batch[:, 0].long()], 3).float()

    x = torch.arange(5).float()[:, None]  # each sample carries its own index
    assert evaluate_accuracy(forward, x, y, batch_size=2) == pytest.approx(60.0)
    assert evaluate_accuracy(forward, x, y, batch_size=256) == pytest.approx(60.0)
    with pytest.raises(ValueError, match="empty"):
        evaluate_accuracy(forward, x[:0], y[:0])
    with pytest.raises(ValueError, match="5 samples but y has 4"):
        evaluate_accuracy(forward, x, y[:4])


def test_evaluate_accuracy_uses_eval_mode_and_restores_training(tiny_data):
    model = build_model("tinycnn", 4, seed=0).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    acc = evaluate_accuracy(model, tiny_data["eval_x"], tiny_data["eval_y"])
    assert 0.0 <= acc <= 100.0
    assert model.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "BN stats changed"
    scripted = torch.jit.script(model.eval())
    assert evaluate_accuracy(scripted, tiny_data["eval_x"], tiny_data["eval_y"]) == acc


# ----------------------------------------------------------------------------- train


def _train(data, seed, **extra):
    model = build_model("tinycnn", 4, {"width": 8}, seed=0)
    lines = []
    history = train_model(
        model, data, epochs=2, batch_size=32, lr=0.05, seed=seed, log=lines.append, **extra
    )
    return model, history, lines


def test_training_is_bit_identical_for_the_same_seed(tiny_data):
    a, hist_a, _ = _train(tiny_data, seed=1)
    b, hist_b, _ = _train(tiny_data, seed=1)
    c, _, _ = _train(tiny_data, seed=2)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert [e["loss"] for e in hist_a["epochs"]] == [e["loss"] for e in hist_b["epochs"]]
    assert not all(torch.equal(sa[k], sc[k]) for k in sa), "the seed had no effect"


def test_training_logs_history_and_restores_global_state(tiny_data):
    torch.manual_seed(7)
    rng = torch.random.get_rng_state()
    deterministic = torch.are_deterministic_algorithms_enabled()
    model, history, lines = _train(tiny_data, seed=0)
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    assert not model.training
    assert all(p.is_contiguous() for p in model.parameters())  # not left channels_last
    assert len(lines) == 3
    pattern = r"epoch 2/2 loss \d+\.\d{3} train_acc \d+\.\d% eval_acc \d+\.\d% \d+\.\ds"
    assert re.fullmatch(pattern, lines[1]), lines[1]
    assert lines[2] == history["trend"]["message"]  # the verdict on convergence is logged
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    assert history["final_eval_acc"] == history["epochs"][-1]["eval_acc"]
    assert history["settings"]["seed"] == 0


def _epochs(*points):
    return [{"epoch": i + 1, "loss": loss, "eval_acc": acc} for i, (loss, acc) in enumerate(points)]


def test_trend_says_when_training_stopped_while_still_improving():
    # A 1,300-image folder after 3 epochs: loss still falling, eval still rising.
    rising = training_trend(_epochs((1.9, 30.0), (1.2, 45.0), (0.8, 63.0)))
    assert rising["still_improving"] is True
    assert rising["message"] == (
        "training stopped while still improving: in epoch 3 the train loss fell 33% "
        "(1.200 -> 0.800) and eval top-1 rose 18.0 points (45.0% -> 63.0%); more epochs "
        "would likely help (README: sizing epochs)"
    )
    # Only the eval split still rising is enough, and so is only the loss still falling.
    assert training_trend(_epochs((0.30, 90.0), (0.29, 93.0)))["still_improving"] is True
    assert training_trend(_epochs((0.30, 97.0), (0.20, 97.0)))["still_improving"] is True
    flat = training_trend(_epochs((0.10, 97.0), (0.095, 97.2)))
    assert flat["still_improving"] is False
    assert flat["message"] == (
        "training levelled off: in epoch 2 the train loss fell 5%, eval top-1 moved +0.2 points"
    )
    assert training_trend(_epochs((0.5, 80.0)))["still_improving"] is None  # one epoch
    no_eval = training_trend(_epochs((0.5, float("nan")), (0.49, float("nan"))))
    assert no_eval["still_improving"] is False and no_eval["eval_gain"] is None


def test_channels_last_is_only_a_speed_setting(tiny_data):
    a, _, _ = _train(tiny_data, seed=3, channels_last=True)
    b, _, _ = _train(tiny_data, seed=3, channels_last=False)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-3, atol=1e-3, msg=name)


def test_train_rejects_unknown_settings(tiny_data):
    model = build_model("tinycnn", 4)
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['weight_dacay'\]"):
        train_model(model, tiny_data, 1, 32, 0.05, 0, log=lambda s: None, weight_dacay=0.1)
    with pytest.raises(ValueError, match="lr > 0"):
        train_model(model, tiny_data, 1, 32, 0.0, 0, log=lambda s: None)
    with pytest.raises(
        ValueError, match=r"optimizer must be one of \('sgd', 'adamw'\), got 'adam'"
    ):
        train_model(model, tiny_data, 1, 32, 0.05, 0, log=lambda s: None, optimizer="adam")


def test_adamw_is_its_own_optimizer_and_sgd_stays_the_default(tiny_data):
    sgd, hist_sgd, _ = _train(tiny_data, seed=1)
    adamw, hist_adamw, _ = _train(tiny_data, seed=1, optimizer="adamw", weight_decay=0.05)
    assert hist_sgd["settings"]["optimizer"] == "sgd"
    assert hist_adamw["settings"]["optimizer"] == "adamw"
    head = "classifier.2.weight"
    assert not torch.equal(adamw.state_dict()[head], sgd.state_dict()[head])


def test_small_model_learns_shapes_above_chance():
    data = make_shapes(24, 24, num_classes=4, seed=0, train_size=800, calib_size=8, eval_size=200)
    model = build_model("tinycnn", 4, seed=0)
    history = train_model(model, data, epochs=4, batch_size=32, lr=0.05, seed=0, log=lambda s: 0)
    losses = [e["loss"] for e in history["epochs"]]
    assert losses[-1] < 0.8 * losses[0]
    assert history["final_eval_acc"] > 50.0  # chance is 25%
    measured = evaluate_accuracy(model, data["eval_x"], data["eval_y"])
    assert measured == history["final_eval_acc"]


# ----------------------------------------------------------------------------- checkpoints


def test_load_user_checkpoint_accepts_state_dicts(tmp_path):
    sd = build_model("tinycnn", 3, seed=0).state_dict()
    plain, wrapped, parallel = tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "c.pt"
    torch.save(sd, plain)
    torch.save({"state_dict": sd, "epoch": 3, "arch": "tinycnn"}, wrapped)
    torch.save({f"module.{k}": v for k, v in sd.items()}, parallel)
    for path in (plain, wrapped, parallel):
        loaded = load_user_checkpoint(path)
        assert loaded.keys() == sd.keys()
        assert all(torch.equal(loaded[k], sd[k]) for k in sd)
    model = build_model("tinycnn", 3, seed=1)
    model.load_state_dict(load_user_checkpoint(str(plain)))


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_load_user_checkpoint_refuses_code(tmp_path, writer):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pt"
    payload = {"conv.weight": torch.zeros(1), "x": Exploit(marker)}
    write_payload(path, payload, writer)
    with pytest.raises(ValueError) as err:
        load_user_checkpoint(path)
    assert str(err.value) == (
        f"{path}: refused to load checkpoint: unpickling it would execute code (it calls "
        "posix.system). A plain state_dict does not. Save it with "
        "torch.save(model.state_dict(), path)."
    )
    assert not marker.exists(), "the pickle's payload ran"


def test_random_or_truncated_checkpoints_are_called_corrupt_not_unsafe(tmp_path):
    random_bytes = tmp_path / "random.pt"
    # 0xe7 first: torch's weights-only unpickler says "Unsupported operand 231" about it.
    random_bytes.write_bytes(bytes([0xE7]) + os.urandom(4095))
    truncated = tmp_path / "truncated.pt"
    torch.save({"conv.weight": torch.zeros(64)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:-100])
    legacy = tmp_path / "legacy.pt"
    torch.save({"conv.weight": torch.zeros(64)}, legacy, _use_new_zipfile_serialization=False)
    legacy.write_bytes(legacy.read_bytes()[:-100])
    cases = [(random_bytes, "is corrupt: byte 0 (0xe7) is not a pickle opcode"),
             (truncated, "is truncated or corrupt"), (legacy, "is truncated")]  # fmt: skip
    for path, words in cases:
        with pytest.raises(ValueError) as err:
            load_user_checkpoint(path)
        message = str(err.value)
        assert message.startswith(f"{path}: cannot read checkpoint: the file {words}"), message
        assert "not a valid torch.save file" in message and "execute code" not in message


def test_load_user_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_user_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk that is not a torch file")
    with pytest.raises(ValueError, match="not a valid torch.save file"):
        load_user_checkpoint(tmp_path / "junk.pt")
    torch.save({"weight": torch.zeros(1), "epoch": 3}, tmp_path / "mixed.pt")
    with pytest.raises(ValueError, match="not a state_dict"):
        load_user_checkpoint(tmp_path / "mixed.pt")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="expected a state_dict"):
        load_user_checkpoint(tmp_path / "list.pt")
