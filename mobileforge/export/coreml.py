"""Core ML payloads inside ``.pte`` programs, made byte-reproducible.

Core ML lowering writes random ids and the conversion date into its payload; this module
canonicalises the payload directory before executorch packs it (see
``canonicalize_payload_dir``), so two exports of the same model give the same bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

# coremltools stamps the conversion day into the model's user metadata: bytes would change daily.
VOLATILE_METADATA = ("com.github.apple.coremltools.conversion_date",)


def _content_uuid(seed: bytes) -> str:
    """A UUID-formatted id derived from ``seed`` (stands in for uuid4 where bytes must repeat)."""
    return str(uuid.UUID(bytes=hashlib.sha256(seed).digest()[:16], version=4))


def canonicalize_payload_dir(root: Path) -> None:
    """Make a Core ML delegate payload directory a function of the model alone.

    Left alone, three things make Core ML ``.pte`` bytes differ between two exports of the same
    model (everything else is identical): (1) executorch names each payload
    ``executorch_<uuid4>`` in ``metadata.json``, the Core ML runtime's cache key for the model it
    compiles on device; (2) the ``.mlpackage`` ``Manifest.json`` keys its items by uuid4 (and
    orders them by those random keys); (3) ``model.mlmodel`` is a protobuf with map fields
    (op attributes, op inputs, user metadata) serialised in an order that changes from process
    to process, plus coremltools' ``conversion_date`` metadata. Here (3) is re-serialised with
    protobuf's deterministic mode and the date dropped, (2) gets ids derived from each item's
    path, sorted, and (1) an id derived from the SHA-256 of every other file of the payload, so
    the runtime's cache key still changes whenever the model does.
    """
    import json

    from coremltools.proto import Model_pb2

    for spec_path in sorted(root.rglob("*.mlmodel")):
        spec = Model_pb2.Model()
        spec.ParseFromString(spec_path.read_bytes())
        user_metadata = spec.description.metadata.userDefined
        for key in VOLATILE_METADATA:
            if key in user_metadata:
                del user_metadata[key]
        spec_path.write_bytes(spec.SerializeToString(deterministic=True))
    for manifest_path in sorted(root.rglob("Manifest.json")):
        manifest = json.loads(manifest_path.read_text())
        new_ids = {
            old: _content_uuid(b"mlpackage item " + item["path"].encode())
            for old, item in manifest["itemInfoEntries"].items()
        }
        manifest["itemInfoEntries"] = {
            new_ids[old]: item for old, item in manifest["itemInfoEntries"].items()
        }
        manifest["rootModelIdentifier"] = new_ids[manifest["rootModelIdentifier"]]
        manifest_path.write_text(json.dumps(manifest, indent=4, sort_keys=True) + "\n")
    metadata_path = root / "metadata.json"
    if metadata_path.exists():
        digest = hashlib.sha256()
        for path in sorted(p for p in root.rglob("*") if p.is_file() and p != metadata_path):
            relative = path.relative_to(root).as_posix().encode()
            digest.update(len(relative).to_bytes(8, "little") + relative)
            data = path.read_bytes()
            digest.update(len(data).to_bytes(8, "little") + data)
        text = metadata_path.read_text()
        old_id = json.loads(text)["identifier"]
        new_id = "executorch_" + _content_uuid(digest.digest())
        metadata_path.write_text(text.replace(json.dumps(old_id), json.dumps(new_id)))


@contextlib.contextmanager
def deterministic_payloads() -> Iterator[list[str]]:
    """While active, Core ML lowering canonicalises each payload before it is packed.

    executorch packs the payload directory with ``executorchcoreml.flatten_directory_contents``
    at the end of ``CoreMLBackend.preprocess``; this wraps that one call with
    ``canonicalize_payload_dir``. Yields the list of payload directories handled (for checks).
    """
    from executorch.backends.apple.coreml.compiler import coreml_preprocess

    native = coreml_preprocess.executorchcoreml
    original = native.flatten_directory_contents
    handled: list[str] = []

    def flatten(path: str) -> bytes | None:
        canonicalize_payload_dir(Path(path))
        handled.append(path)
        return original(path)

    native.flatten_directory_contents = flatten
    try:
        yield handled
    finally:
        native.flatten_directory_contents = original
