"""The fp32 model: trained (or imported) and fused, with the reference logits every artifact
is compared with."""

from __future__ import annotations

from typing import Any

from mobileforge import files
from mobileforge.job import Job
from mobileforge.stages.common import versions


def train(job: Job) -> None:
    """Train the fp32 model deterministically, or import the user's state_dict instead."""
    import torch

    from mobileforge import train as training
    from mobileforge.data import load_dataset
    from mobileforge.data.holdout import split_holdout
    from mobileforge.models import build_model
    from mobileforge.stagefile import save_stage

    p = job.params["settings"]
    # Trained without the held-back part: its score is then an honest reference for the channel
    # points' fine-tune (which holds back the same images), not a training accuracy.
    data = split_holdout(load_dataset(job.input["data"]), p["train"].get("holdout", 0.0))
    num_classes = p["num_classes"] or len(data["classes"])
    learns = bool(p["checkpoint"]) or p["train"]["epochs"] > 0
    # Untrained weights (speed/size studies, e.g. 1000 classes) only need valid label indices.
    if num_classes < len(data["classes"]) or (learns and num_classes != len(data["classes"])):
        raise ValueError(
            f"models.{p['model']}.num_classes is {num_classes} but the dataset has "
            f"{len(data['classes'])} classes"
        )
    kwargs = p["kwargs"] or {}
    torch.manual_seed(p["train"]["seed"])  # initial weights follow the seed too
    model = build_model(p["arch"], num_classes, kwargs)
    meta: dict[str, Any] = {
        "stage": "checkpoint",
        "model": p["model"],
        "arch": p["arch"],
        "kwargs": kwargs,
        "num_classes": num_classes,
        "input_shape": p["input_shape"],
        "params": sum(t.numel() for t in model.parameters()),
    }
    info: dict[str, Any] = {}
    if p["checkpoint"]:
        state_dict = training.load_user_checkpoint(p["checkpoint"])
        try:
            model.load_state_dict(state_dict)
        except RuntimeError as error:
            raise ValueError(
                f"{p['checkpoint']}: does not fit arch {p['arch']!r} with kwargs {kwargs}: "
                f"{str(error).splitlines()[0]}"
            ) from error
        meta["source"] = f"imported from {p['checkpoint']}"
        job.log(f"imported {p['checkpoint']} (training skipped)")
    elif p["train"]["epochs"] == 0:
        meta["source"] = f"initial weights of seed {p['train']['seed']} (train.epochs is 0)"
        job.log("train.epochs is 0: keeping the seeded initial weights; accuracy means nothing")
    else:
        settings = p["train"]
        history = training.train_model(
            model,
            data,
            epochs=settings["epochs"],
            batch_size=settings["batch_size"],
            lr=settings["lr"],
            seed=settings["seed"],
            momentum=settings["momentum"],
            weight_decay=settings["weight_decay"],
            # Absent unless configured, so a config without it keeps its params (and its plan).
            optimizer=settings.get("optimizer", "sgd"),
            log=job.log,
        )
        meta["source"] = "trained"
        # Top level too: whether training stopped while still improving (and by how much).
        info["still_improving"] = history["trend"]["still_improving"]
        info["train"] = {"settings": settings, "history": history}
    model.eval()
    if "train" in info:  # the last epoch already measured the final weights on the eval split
        accuracy = info["train"]["history"]["final_eval_acc"]
    else:
        accuracy = training.evaluate_accuracy(model, data["eval_x"], data["eval_y"])
    job.log(f"fp32 eval top-1: {accuracy:.2f}%")
    info["eval_accuracy"] = accuracy
    holdout = len(data["holdout_y"])
    info["holdout"] = {"images": holdout, "train_images": len(data["train_y"])}
    if holdout:
        info["holdout"]["accuracy"] = training.evaluate_accuracy(
            model, data["holdout_x"], data["holdout_y"]
        )
        job.log(f"fp32 top-1 on the {holdout} held-back train images: "
                f"{info['holdout']['accuracy']:.2f}%")  # fmt: skip
    save_stage(
        job.output["checkpoint"],
        {k: v.detach().clone() for k, v in model.state_dict().items()},
        meta,
        job.output["sidecar"],
        {**info, **versions(job)},
    )


def fuse(job: Job) -> None:
    """Fuse conv-bn(-relu)/linear-relu, check the outputs did not move, keep the fp32 reference.

    The unfused model's logits on the eval split are both the yardstick of the fusion check and
    the reference every artifact is compared with, so they are written here (``reference``).
    """
    import torch

    from mobileforge import chain
    from mobileforge.data import load_dataset
    from mobileforge.fuse import fuse as fuse_model
    from mobileforge.macs import macs_by_kind
    from mobileforge.runtime.evaluate import collect_logits
    from mobileforge.stagefile import save_stage, torch_bytes

    model, meta = chain.load_checkpoint_model(job.input["checkpoint"])
    data = load_dataset(job.input["data"])
    fused = fuse_model(model)
    with torch.no_grad():
        reference = collect_logits(model, data["eval_x"], batch_size=256)
        diff = (collect_logits(fused, data["eval_x"], batch_size=256) - reference).abs().max()
    diff = float(diff)
    atol = job.params["fuse"]["atol"]
    job.log(f"fused vs unfused max |diff| on {len(data['eval_x'])} eval images: {diff:.3g}")
    if diff > atol:
        raise ValueError(f"fusion changed outputs by {diff:.3g} > fuse.atol {atol}")
    files.write_bytes_atomic(job.output["reference"], torch_bytes(reference))
    # MACs of one inference travel with the model to every artifact made from it (int8 ones too:
    # quantized modules cannot be counted). Their split by layer kind goes in the sidecar, which
    # the workflow reads (fuse is a checkpoint) to decide quantize.mode auto.
    by_kind = macs_by_kind(fused, meta["input_shape"])
    save_stage(
        job.output["fused"],
        fused.state_dict(),
        {**meta, "stage": "fused", "macs": sum(by_kind.values())},
        job.output["sidecar"],
        {
            "fusion_max_abs_diff": diff,
            "fusion_atol": atol,
            "macs_by_kind": by_kind,
            **versions(job),
        },
    )
