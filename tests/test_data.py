"""Datasets: shapes generator, folder and tensor loaders, safe persistence."""

import hashlib
import os
import random

import numpy as np
import pytest
import torch
from PIL import Image

from mobileforge.data import (
    SHAPE_CLASSES,
    SHAPES_PRESETS,
    build_dataset,
    load_dataset,
    load_folder,
    load_tensors,
    make_shapes,
    save_dataset,
)
from tests.exploit import Exploit, write_payload

SMALL = {"train_size": 120, "calib_size": 20, "eval_size": 40}


def _check_layout(data, n_classes, c, h, w):
    assert set(data) == {
        "train_x", "train_y", "calib_x", "calib_y", "eval_x", "eval_y", "classes", "meta"
    }  # fmt: skip
    for key in ("train_x", "calib_x", "eval_x"):
        assert data[key].dtype == torch.float32
        assert data[key].shape[1:] == (c, h, w)
        assert data[key].is_contiguous()
    for key in ("train_y", "calib_y", "eval_y"):
        assert data[key].dtype == torch.int64
    assert data["train_x"].shape[0] == data["train_y"].shape[0]
    assert data["calib_x"].shape[0] == data["calib_y"].shape[0]
    assert data["eval_x"].shape[0] == data["eval_y"].shape[0]
    assert len(data["classes"]) == n_classes
    meta = data["meta"]
    assert (meta["height"], meta["width"], meta["channels"]) == (h, w, c)
    assert len(meta["mean"]) == c and len(meta["std"]) == c


def _digests(x):
    return {hashlib.sha1(img.numpy().tobytes()).hexdigest() for img in x}


# ----------------------------------------------------------------------------- shapes


def test_shapes_layout_balance_and_normalisation():
    data = make_shapes(32, 32, seed=0, train_size=500, calib_size=64, eval_size=200)
    _check_layout(data, 10, 3, 32, 32)
    assert data["classes"] == list(SHAPE_CLASSES)
    assert data["train_x"].shape[0] == 500 and data["calib_x"].shape[0] == 64
    assert torch.bincount(data["train_y"], minlength=10).tolist() == [50] * 10
    assert torch.bincount(data["eval_y"], minlength=10).tolist() == [20] * 10
    mean = data["train_x"].mean(dim=(0, 2, 3))
    std = data["train_x"].std(dim=(0, 2, 3))
    torch.testing.assert_close(mean, torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(std, torch.ones(3), atol=1e-3, rtol=0)
    # Eval is normalised with the train statistics, so it is only roughly standard.
    assert abs(float(data["eval_x"].mean())) < 0.2
    assert data["meta"]["name"] == "shapes" and data["meta"]["seed"] == 0


def test_shapes_deterministic_and_global_rng_untouched():
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    torch_state = torch.random.get_rng_state()
    np_state = np.random.get_state()[1].copy()
    a = make_shapes(32, 32, seed=5, **SMALL)
    b = make_shapes(32, 32, seed=5, **SMALL)
    c = make_shapes(32, 32, seed=6, **SMALL)
    for key in ("train_x", "train_y", "calib_x", "eval_x", "eval_y"):
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["train_x"], c["train_x"])
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state)


@pytest.mark.parametrize("sizes", [(1000, 256, 500), (300, 300, 300)])
def test_shapes_splits_never_overlap(sizes):
    # Equal sizes too: splits drawn from one shared stream would then be identical.
    n_train, n_calib, n_eval = sizes
    data = make_shapes(32, 32, seed=0, train_size=n_train, calib_size=n_calib, eval_size=n_eval)
    train, calib, evals = (_digests(data[k]) for k in ("train_x", "calib_x", "eval_x"))
    assert (len(train), len(calib), len(evals)) == sizes  # no duplicates within a split
    assert not train & calib
    assert not train & evals
    assert not calib & evals


def test_shapes_split_streams_are_independent_of_sizes():
    # Each split has its own stream: resizing train must not change eval.
    a = make_shapes(16, 16, seed=0, train_size=50, calib_size=8, eval_size=30)
    b = make_shapes(16, 16, seed=0, train_size=80, calib_size=8, eval_size=30)
    assert torch.equal(a["eval_y"], b["eval_y"])


@pytest.mark.parametrize(("h", "w", "c"), [(24, 40, 1), (17, 17, 3), (224, 224, 3)])
def test_shapes_any_size_and_channels(h, w, c):
    data = make_shapes(h, w, channels=c, num_classes=4, seed=1, **SMALL)
    _check_layout(data, 4, c, h, w)
    assert data["classes"] == list(SHAPE_CLASSES[:4])
    assert int(data["train_y"].max()) == 3
    assert torch.isfinite(data["train_x"]).all()


def test_shapes_images_contain_their_shape():
    # Without noise/clutter, a filled circle covers more pixels than a thin ring of equal size:
    # the renderer really draws what the label says.
    knobs = {"noise": (0.0, 0.0), "clutter": (0, 0), "scale": (0.4, 0.4)}
    data = make_shapes(64, 64, seed=0, train_size=200, calib_size=1, eval_size=1, **knobs)
    x, y = data["train_x"], data["train_y"]
    centre = x[:, :, 16:48, 16:48]
    border = x[:, :, :4, :4]
    contrast = (centre - border.mean(dim=(2, 3), keepdim=True)).abs().mean(dim=(1, 2, 3))
    circle = contrast[y == SHAPE_CLASSES.index("circle")].mean()
    ring = contrast[y == SHAPE_CLASSES.index("ring")].mean()
    assert circle > ring


def test_shapes_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_classes must be between 2 and 10"):
        make_shapes(32, 32, num_classes=11, **SMALL)
    with pytest.raises(ValueError, match="unknown option"):
        make_shapes(32, 32, blur=3, **SMALL)
    with pytest.raises(ValueError, match="train_size must be >= 1"):
        make_shapes(32, 32, train_size=0)


# ----------------------------------------------------------------------------- folder


def _write_images(root, counts, size=(20, 12)):
    rng = np.random.default_rng(0)
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True)
        for i in range(n):
            arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / cls / f"{i:03d}.png")


def test_load_folder(tmp_path):
    _write_images(tmp_path, {"cat": 20, "dog": 10, "emu": 10})
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden").mkdir()
    data = load_folder(tmp_path, 16, 8, calib_fraction=0.1, eval_fraction=0.2, seed=0)
    _check_layout(data, 3, 3, 16, 8)
    assert data["classes"] == ["cat", "dog", "emu"]
    sizes = data["meta"]["sizes"]
    assert sizes == {"train": 28, "calib": 4, "eval": 8}
    assert torch.bincount(data["eval_y"]).tolist() == [4, 2, 2]  # stratified
    splits = [_digests(data[k]) for k in ("train_x", "calib_x", "eval_x")]
    assert sum(len(s) for s in splits) == 40 and len(set.union(*splits)) == 40
    again = load_folder(tmp_path, 16, 8, calib_fraction=0.1, eval_fraction=0.2, seed=0)
    assert torch.equal(data["train_x"], again["train_x"])
    other = load_folder(tmp_path, 16, 8, calib_fraction=0.1, eval_fraction=0.2, seed=1)
    assert not torch.equal(data["eval_x"], other["eval_x"])
    gray = load_folder(tmp_path, 16, 8, channels=1)
    assert gray["train_x"].shape[1] == 1


def test_load_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset folder not found"):
        load_folder(tmp_path / "missing", 8, 8)
    _write_images(tmp_path / "one", {"only": 3})
    with pytest.raises(ValueError, match=r"found 1 class folder\(s\), need at least 2"):
        load_folder(tmp_path / "one", 8, 8)
    _write_images(tmp_path / "bad", {"a": 10, "b": 10})
    broken = tmp_path / "bad" / "b" / "broken.jpg"
    broken.write_bytes(b"definitely not a jpeg")
    with pytest.raises(ValueError) as err:
        load_folder(tmp_path / "bad", 8, 8)
    assert str(broken) in str(err.value) and "cannot read image" in str(err.value)
    _write_images(tmp_path / "tiny", {"a": 1, "b": 1})
    with pytest.raises(ValueError, match="split is empty"):
        load_folder(tmp_path / "tiny", 8, 8)


# ----------------------------------------------------------------------------- tensors


def test_load_tensors_xy_split_and_resize(tmp_path):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(100, 3, 20, 20, generator=gen)
    y = torch.arange(100) % 4
    path = tmp_path / "t.pt"
    torch.save({"x": x, "y": y, "classes": ["a", "b", "c", "d"]}, path)
    data = load_tensors(path, 10, 10, seed=0)
    _check_layout(data, 4, 3, 10, 10)
    assert data["classes"] == ["a", "b", "c", "d"]
    assert data["meta"]["sizes"] == {"train": 68, "calib": 12, "eval": 20}
    same = load_tensors(path, 20, 20, seed=0)
    # Without resizing, the values are used as given (no normalisation by default).
    everything = torch.cat([same["train_x"], same["calib_x"], same["eval_x"]])
    assert _digests(everything) == _digests(x)
    normed = load_tensors(path, 20, 20, seed=0, normalize=True)
    assert abs(float(normed["train_x"].mean())) < 1e-4


def test_load_tensors_presplit_uint8(tmp_path):
    path = tmp_path / "t.pt"
    tx = torch.randint(0, 256, (30, 1, 8, 8), dtype=torch.uint8)
    ex = torch.randint(0, 256, (10, 1, 8, 8), dtype=torch.uint8)
    ty, ey = torch.arange(30) % 3, torch.arange(10) % 3
    torch.save({"train_x": tx, "train_y": ty, "eval_x": ex, "eval_y": ey}, path)
    data = load_tensors(path, 8, 8, channels=1, calib_fraction=0.1)
    _check_layout(data, 3, 1, 8, 8)
    assert data["calib_x"].shape[0] == 3 and data["train_x"].shape[0] == 27
    assert float(data["train_x"].max()) <= 1.0
    torch.testing.assert_close(data["eval_x"], ex.float() / 255)
    # The carved calib split keeps each image's own label.
    label_of = {(tx[i].float() / 255).numpy().tobytes(): int(ty[i]) for i in range(len(tx))}
    for image, label in zip(data["calib_x"], data["calib_y"], strict=True):
        assert label_of[image.numpy().tobytes()] == int(label)
    torch.save({"train_x": tx, "train_y": ty, "eval_x": ex, "eval_y": ey, "calib_x": ex}, path)
    given = load_tensors(path, 8, 8, channels=1)
    assert given["calib_x"].shape[0] == 10 and "calib_y" not in given  # unlabelled calib split
    torch.save({"train_x": tx, "train_y": ty, "eval_x": ex, "eval_y": ey, "calib_x": ex,
                "calib_y": ey}, path)  # fmt: skip
    assert torch.equal(load_tensors(path, 8, 8, channels=1)["calib_y"], ey)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"images": torch.zeros(4, 3, 8, 8)}, "unexpected keys"),
        ({"x": torch.zeros(4, 8, 8), "y": torch.zeros(4, dtype=torch.long)}, "shape [N,C,H,W]"),
        ({"x": torch.zeros(4, 3, 8, 8), "y": torch.zeros(5, dtype=torch.long)}, "5 labels for 4"),
        ({"x": torch.zeros(4, 3, 8, 8), "y": torch.zeros(4)}, "integer tensor"),
        ({"x": torch.zeros(4, 1, 8, 8), "y": torch.zeros(4, dtype=torch.long)}, "1 channels"),
        ([1, 2, 3], "expected a dict"),
    ],
)
def test_load_tensors_rejects_bad_content(tmp_path, payload, message):
    path = tmp_path / "bad.pt"
    torch.save(payload, path)
    with pytest.raises(ValueError) as err:
        load_tensors(path, 8, 8)
    assert str(path) in str(err.value) and message in str(err.value)


@pytest.mark.parametrize("writer", ["torch", "pickle"])
@pytest.mark.parametrize("loader", ["tensors", "dataset"])
def test_code_executing_pickles_are_refused(tmp_path, writer, loader):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"x": Exploit(marker), "y": torch.zeros(2)}
    write_payload(path, payload, writer)
    with pytest.raises(ValueError) as err:
        if loader == "tensors":
            load_tensors(path, 8, 8)
        else:
            load_dataset(path)
    assert str(path) in str(err.value)
    assert "would execute code" in str(err.value)
    assert not marker.exists(), "the pickle's payload ran"


def test_load_tensors_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_tensors(tmp_path / "nope.pt", 8, 8)


def _tensor_digest(data):
    h = hashlib.sha256()
    for key in ("train_x", "train_y", "calib_x", "calib_y", "eval_x", "eval_y"):
        h.update(data[key].numpy().tobytes())
    return h.hexdigest()


def test_shapes_standard_is_the_default_and_unchanged():
    """``difficulty: standard`` is the knobs the default config was tuned with, written out
    here so that a change to them fails (it would change every default run's data), and the
    same images as leaving the key out."""
    default = make_shapes(16, 16, seed=3, **SMALL)
    spec = {"name": "shapes", "seed": 3, "difficulty": "standard", **SMALL}
    standard = build_dataset(spec, 16, 16)
    assert _tensor_digest(default) == _tensor_digest(standard)
    assert default["meta"]["preset"] == standard["meta"]["preset"] == "standard"
    assert standard["meta"]["difficulty"] == {
        "scale": [0.40, 0.50],
        "contrast": [0.40, 0.60],
        "noise": [0.02, 0.25],
        "clutter": [1, 4],
        "rotation": 10.0,
        "stripe_tilt": 20.0,
        "polarity": "luma",
        "faint": 0.0,
        "occluders": [0, 0],
    }


def test_shapes_hard_preset_differs_and_is_recorded():
    standard = make_shapes(16, 16, seed=3, **SMALL)
    hard = make_shapes(16, 16, seed=3, difficulty="hard", **SMALL)
    assert _tensor_digest(hard) != _tensor_digest(standard)
    assert torch.equal(hard["train_y"], standard["train_y"])  # same labels, harder images
    assert hard["meta"]["preset"] == "hard"
    for key, value in SHAPES_PRESETS["hard"].items():
        expected = list(value) if isinstance(value, tuple) else value
        assert hard["meta"]["difficulty"][key] == expected
        assert hard["meta"]["difficulty"][key] != standard["meta"]["difficulty"][key]


def test_shapes_explicit_knob_overrides_the_preset():
    spec = {"name": "shapes", "seed": 3, "difficulty": "hard", "clutter": [0, 0], **SMALL}
    data = build_dataset(spec, 16, 16)
    assert data["meta"]["preset"] == "hard"
    assert data["meta"]["difficulty"]["clutter"] == [0, 0]  # the knob, not the preset's
    assert data["meta"]["difficulty"]["rotation"] == SHAPES_PRESETS["hard"]["rotation"]
    hard = make_shapes(16, 16, seed=3, difficulty="hard", **SMALL)
    assert _tensor_digest(data) != _tensor_digest(hard)


def test_shapes_occluders_cover_the_shape_only_when_asked():
    """Occluders draw from the random stream only when there are some: the images of every
    other setting stay as they were (the default's included)."""
    plain = make_shapes(16, 16, seed=3, clutter=[0, 0], noise=[0, 0], **SMALL)
    occluded = make_shapes(16, 16, seed=3, clutter=[0, 0], noise=[0, 0], occluders=[1, 1], **SMALL)
    assert torch.equal(plain["train_y"], occluded["train_y"])
    changed = (plain["train_x"] != occluded["train_x"]).flatten(1).any(1)
    assert changed.all()  # a band through the shape's surroundings crosses every image
    with pytest.raises(ValueError, match="occluders must be a range"):
        make_shapes(16, 16, occluders=[2, 1], **SMALL)


@pytest.mark.parametrize("preset", ["extreme", "Hard", ["hard"]])
def test_shapes_unknown_preset_names_the_key(preset):
    with pytest.raises(ValueError, match=r"dataset\.difficulty.*standard, hard"):
        build_dataset({"name": "shapes", "difficulty": preset, **SMALL}, 16, 16)


# ----------------------------------------------------------------------------- dispatch & io


def test_build_dataset_dispatch(tmp_path):
    data = build_dataset({"name": "shapes", "seed": 2, "num_classes": 3, **SMALL}, 16, 16)
    assert data["meta"]["seed"] == 2 and len(data["classes"]) == 3
    knobs = {"name": "shapes", "noise": [0.0, 0.0], "clutter": [0, 0], **SMALL}
    assert build_dataset(knobs, 16, 16)["meta"]["difficulty"]["noise"] == [0.0, 0.0]
    torch.save({"x": torch.rand(20, 3, 8, 8), "y": torch.arange(20) % 2}, tmp_path / "t.pt")
    spec = {"name": "tensors", "path": str(tmp_path / "t.pt"), "eval_fraction": 0.25}
    assert (
        build_dataset(spec, 8, 8)["eval_x"].shape[0] == 6
    )  # stratified, half up: 3 of 10 per class
    with pytest.raises(ValueError, match="dataset.name"):
        build_dataset({"name": "imagenet"}, 8, 8)
    with pytest.raises(ValueError, match="needs a 'path'"):
        build_dataset({"name": "folder"}, 8, 8)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['bogus'\]"):
        build_dataset({"name": "tensors", "path": "x.pt", "bogus": 1}, 8, 8)
    with pytest.raises(ValueError, match="come from input_shape"):
        build_dataset({"name": "shapes", "height": 3}, 8, 8)


def test_save_and_load_roundtrip_weights_only(tmp_path):
    data = make_shapes(16, 16, seed=0, **SMALL)
    path = tmp_path / "sub" / "shapes-16x16.pt"
    save_dataset(data, path)
    assert os.listdir(path.parent) == ["shapes-16x16.pt"]  # no temp file left behind
    back = torch.load(path, weights_only=True)
    back2 = load_dataset(path)
    for key in ("train_x", "train_y", "calib_x", "calib_y", "eval_x", "eval_y"):
        assert torch.equal(back[key], data[key])
        assert torch.equal(back2[key], data[key])
    assert back["meta"] == data["meta"] and back["classes"] == data["classes"]


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "d.pt"
    path.write_bytes(b"old complete file")

    def boom(obj, f):
        f.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        save_dataset({"x": 1}, path)
    assert path.read_bytes() == b"old complete file"
    assert os.listdir(tmp_path) == ["d.pt"]


def test_load_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_dataset(tmp_path / "none.pt")
    torch.save({"train_x": torch.zeros(1)}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="not a mobileforge dataset"):
        load_dataset(tmp_path / "partial.pt")
    (tmp_path / "junk.pt").write_bytes(b"hello, not a torch file")
    with pytest.raises(ValueError, match="not a valid torch.save file") as err:
        load_dataset(tmp_path / "junk.pt")
    assert "corrupt" in str(err.value) and "execute code" not in str(err.value)
