"""Accuracy of each artifact, run by its own runtime."""

from __future__ import annotations

from mobileforge import files, records
from mobileforge.job import Job
from mobileforge.stages.common import versions


def evaluate(job: Job) -> None:
    """Accuracy and max |diff| vs the fp32 reference of the artifact, run by its own runtime."""
    import torch

    from mobileforge.data import load_dataset
    from mobileforge.quantize.fx import quantized_engine

    data = load_dataset(job.input["data"])
    reference_logits = torch.load(job.input["reference"], weights_only=True)
    sidecar = records.read(records.ArtifactSidecar, files.sidecar_path(job.input["artifact"]))
    if sidecar["format"] == "ptl":
        from mobileforge.runtime.evaluate import evaluate_ptl

        with quantized_engine(sidecar["engine"] or torch.backends.quantized.engine):
            result = evaluate_ptl(
                job.input["artifact"], data["eval_x"], data["eval_y"], reference_logits
            )
    else:
        from mobileforge.runtime import pte as pte_runtime

        pte_runtime.set_pte_threads(job.threads)  # as torch's: the job's share of the cores
        result = pte_runtime.evaluate_pte(
            job.input["artifact"], data["eval_x"], data["eval_y"], reference_logits
        )
    job.log(
        f"{job.input['artifact']}: top-1 {result['accuracy']:.2f}%, "
        f"max |diff| {result['max_abs_diff']}"
    )
    record = {"artifact": job.input["artifact"], **result, **versions(job)}
    records.check(records.Evaluation, record, job.output["evaluation"])
    files.write_json_atomic(job.output["evaluation"], record)
