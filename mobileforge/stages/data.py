"""The dataset stage: generated or imported train/calib/eval splits."""

from __future__ import annotations

from mobileforge import files
from mobileforge.job import Job
from mobileforge.stages.common import versions


def dataset(job: Job) -> None:
    """Generate (shapes) or import (folder, tensors) the train/calib/eval splits."""
    from mobileforge import data

    spec = job.params["spec"]
    channels, height, width = job.params["chw"]
    job.log(f"building dataset {spec['name']!r} at {channels}x{height}x{width}")
    built = data.build_dataset(spec, height, width, channels)
    data.save_dataset(built, job.output["data"])
    sizes = {split: len(built[f"{split}_x"]) for split in ("train", "calib", "eval")}
    job.log(f"splits: {sizes}, classes: {len(built['classes'])}")
    files.write_sidecar(
        job.output["data"],
        job.output["sidecar"],
        {"spec": spec, "splits": sizes, "classes": built["classes"], **versions(job)},
    )
