"""Pruning: l1-unstructured int8 weights (within the budget) and channel removal with
fine-tuning."""

from __future__ import annotations

from mobileforge.job import Job
from mobileforge.stages.common import prune_summary, unstructured_within_budget, versions


def prune(job: Job) -> None:
    """l1-unstructured pruning of the int8 weights, per-layer amounts within the budget."""
    from mobileforge import chain
    from mobileforge.prune.unstructured import QuantizedLayers, weight_sparsity
    from mobileforge.quantize.fx import quantized_engine
    from mobileforge.stagefile import save_stage

    model, meta = chain.load_quantized_model(job.input["model"])
    fused, _ = chain.load_fused_model(job.input["fused"])
    with quantized_engine(meta["engine"]):
        model, record = unstructured_within_budget(job, QuantizedLayers(model), fused)
        sparsity = weight_sparsity(model)
        state_dict = model.state_dict()
    job.log(f"sparsity {sparsity:.4f} at overall amount {record['amount']:.4g}")
    prune = {"method": "l1_unstructured", **record}
    save_stage(
        job.output["model"],
        state_dict,
        {
            **meta,
            "stage": "int8_pruned",
            "variant": job.wildcards["uvariant"],
            "prune": {key: prune[key] for key in ("method", "amount", "requested_amount")},
            "prune_budget": prune_summary(record),
            "sparsity": sparsity,
        },
        job.output["sidecar"],
        {"prune": prune, **versions(job)},
    )


def prune_channel(job: Job) -> None:
    """Remove channels of the trained model, fine-tune it distilled from the unpruned, fuse it.

    Pruned before fusion: with its BatchNorm layers the pruned network re-normalises its thinner
    activations while it fine-tunes. A BN-folded MobileNetV2 1.0 pruned at 0.6 has lost its
    signal (outputs at a tenth of their scale, chance accuracy) and three epochs of fine-tuning
    left it at chance; the same model pruned with its BN layers was at 67 % after 30 steps.
    """
    import copy

    import torch

    from mobileforge import chain
    from mobileforge import train as training
    from mobileforge.data import load_dataset
    from mobileforge.fuse import fuse as fuse_model
    from mobileforge.prune.channel import parameter_count, prune_channels, pruned_structure
    from mobileforge.stagefile import save_stage

    model, meta = chain.load_checkpoint_model(job.input["checkpoint"])
    data = load_dataset(job.input["data"])
    settings = job.params["prune"]
    teacher = copy.deepcopy(model).eval()
    record = prune_channels(
        model,
        chain.example_input(meta),
        settings["amount"],
        settings["scope"],
        settings["round_to"],
        job.log,
    )
    finetune, train = settings["finetune"], settings["train"]
    if finetune["epochs"] > 0:
        history = training.train_model(
            model,
            {"train_x": data["train_x"], "train_y": data["train_y"]},  # the train split only
            epochs=finetune["epochs"],
            batch_size=train["batch_size"],
            lr=finetune["lr"],
            seed=train["seed"],
            momentum=train["momentum"],
            weight_decay=train["weight_decay"],
            teacher=teacher,
            distillation=finetune["distillation"],
            temperature=finetune["temperature"],
            warmup_epochs=min(1.0, 0.25 * finetune["epochs"]),
            log=job.log,
        )
        record["finetune"] = {**finetune, "history": history["epochs"]}
    fused = fuse_model(model)
    # Parameters as the int8 and export stages see them: of the fused models, BN folded.
    record["before"]["params"] = parameter_count(fuse_model(teacher))
    record["after"]["params"] = parameter_count(fused)
    state_dict = {key: value.detach().clone() for key, value in fused.state_dict().items()}
    pruned_meta = {
        **meta,
        "stage": "pruned",
        "pruned_structure": pruned_structure(fused),
        "macs": record["after"]["macs"],
        "params": record["after"]["params"],
        "pruned": {key: record[key] for key in ("method", "amount", "scope", "round_to")},
    }
    # The saved stage must rebuild from architecture + structure + weights alone.
    rebuilt = chain.rebuild_stage(state_dict, pruned_meta)
    example = data["calib_x"][:2]
    with torch.no_grad():
        if not torch.equal(rebuilt(example), fused(example)):
            raise RuntimeError("the pruned model does not rebuild from its recorded structure")
    save_stage(
        job.output["model"], state_dict, pruned_meta, job.output["sidecar"],
        {"prune": record, **versions(job)},
    )  # fmt: skip
