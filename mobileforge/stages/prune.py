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
    """Remove channels of the trained model, fine-tune it distilled from the unpruned until it
    is within budget on the held-back part of the train split, fuse it
    (:func:`mobileforge.prune.finetune.prune_and_finetune`)."""
    import torch

    from mobileforge import chain, records
    from mobileforge.data import load_dataset
    from mobileforge.data.holdout import split_holdout
    from mobileforge.prune.channel import pruned_structure
    from mobileforge.prune.finetune import prune_and_finetune
    from mobileforge.stagefile import save_stage

    model, meta = chain.load_checkpoint_model(job.input["checkpoint"])
    settings = job.params["prune"]
    # The same held-back images as the train stage's (the dataset's seed chooses them).
    data = split_holdout(load_dataset(job.input["data"]), settings["train"]["holdout"])
    fused, record = prune_and_finetune(model, chain.example_input(meta), data, settings, job.log)
    records.check(records.ChannelPruneRecord, record, job.output["sidecar"])
    state_dict = {key: value.detach().clone() for key, value in fused.state_dict().items()}
    pruned_meta = {
        **meta,
        "stage": "pruned",
        "pruned_structure": pruned_structure(fused),
        "macs": record["after"]["macs"],
        "params": record["after"]["params"],
        # What every artifact of the point reports of its pruning (its sidecar's prune, the
        # summary's prune_* and finetune_epochs columns).
        "pruned": {
            **{key: record[key] for key in ("method", "amount", "scope", "round_to")},
            "steps": len(record["steps"]),
            "finetune_epochs": record["recovery"]["epochs_used"],
            "stopped": record["recovery"]["stopped"],
        },
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
