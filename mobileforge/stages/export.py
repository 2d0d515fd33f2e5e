"""The deployable artifacts: lite-interpreter .ptl and ExecuTorch .pte per backend."""

from __future__ import annotations

from mobileforge import files, records
from mobileforge.job import Job, preloads
from mobileforge.stages.common import artifact_info, prune_summary, unstructured_within_budget
from mobileforge.warm.client import EXECUTORCH_MODULES


def export_ptl(job: Job) -> None:
    """Frozen (or plain scripted, when smaller) lite-interpreter module."""
    import torch

    from mobileforge import chain
    from mobileforge.export.ptl import export_ptl as export
    from mobileforge.quantize.fx import quantized_engine

    model, meta = chain.load_stage_model(job.input["model"])
    backend = job.wildcards["backend"]
    variant = meta.get("variant", "fp32")
    engine = meta.get("engine", torch.backends.quantized.engine)
    with quantized_engine(engine):
        data, info = export(model, backend, chain.example_input(meta), log=job.log)
    record = files.write_artifact(
        job.output["artifact"],
        data,
        job.output["sidecar"],
        {
            **artifact_info(job, meta, "ptl", variant, backend),
            **info,
            "compressed_bytes": files.compressed_size(data),
        },
    )
    records.check(records.ArtifactSidecar, record, job.output["sidecar"])
    job.log(f"wrote {record['artifact']}: {record['size_bytes']} B via {info['optimization']}")


@preloads(EXECUTORCH_MODULES)
def export_pte(job: Job) -> None:
    """ExecuTorch program lowered to one backend: fp32; int8, the converted program quantize_pte
    chose and saved (never calibrated again here); or, for unstructured prune points, that
    program with per-layer amounts within the budget."""
    from mobileforge import chain
    from mobileforge.export import pte
    from mobileforge.prune.pt2e import ConvertedLayers
    from mobileforge.quantize.pt2e import load_converted
    from mobileforge.stagefile import load_stage

    pte.check_executorch()
    variant, backend = job.wildcards["variant"], job.wildcards["backend"]
    decision = extra = None
    if "program" not in job.input:
        fused, meta = chain.load_fused_model(job.input["fused"])
        data, info = pte.export_pte(fused, chain.example_input(meta), backend, "fp32")
    else:
        state_dict, meta = load_stage(job.input["fused"])  # the program is this model's int8
        example = chain.example_input(meta)
        decision = files.read_json(job.input["recipe"])
        path = job.input["program"]
        saved = files.read_json(files.sidecar_path(path))
        converted = load_converted(path)
        info = {key: saved[key] for key in ("quantizer", "calibration_samples")}
        if job.params["prune"] is None:  # int8 of the fused or of a channel-pruned model
            data, lowering = pte.lower(converted, example, backend, "int8")
        else:  # params carry prune settings only for points that prune int8 weights
            layers = ConvertedLayers(converted)
            fused = chain.rebuild_stage(state_dict, meta)  # for its logits: the budget's fp32
            _, record = unstructured_within_budget(job, layers, fused)
            data, lowering = pte.lower(converted, example, backend, "int8_pruned")
            info["sparsity"] = layers.sparsity()
            extra = {
                "prune": {"method": "l1_unstructured", **record},
                "prune_budget": prune_summary(record),
            }
        info.update(lowering)
        # Which saved program this was lowered from (and the recipe that chose it).
        info["int8_program"] = {
            "path": path,
            "sha256": files.sha256_file(path),
            "recipe": job.input["recipe"],
        }
    # export_pte reports no pruning for unpruned programs: the model's own (channel) pruning
    # record from artifact_info must not be overwritten by those blanks.
    info = {key: value for key, value in info.items() if value is not None}
    record = files.write_artifact(
        job.output["artifact"],
        data,
        job.output["sidecar"],
        {
            **artifact_info(job, meta, "pte", variant, backend, decision),
            **info,
            "variant": variant,
            "optimization": f"to_edge_transform_and_lower({backend})",
            "compressed_bytes": files.compressed_size(data),
            **(extra or {}),
        },
    )
    records.check(records.ArtifactSidecar, record, job.output["sidecar"])
    job.log(f"wrote {record['artifact']}: {record['size_bytes']} B")
