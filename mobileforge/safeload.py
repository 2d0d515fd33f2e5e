"""Load a user's torch file with ``weights_only=True``, and say why when that fails.

torch's weights-only unpickler refuses a file with one kind of error (``UnpicklingError``)
whether the file would run code when unpickled or is just damaged: random bytes are refused
with ``Unsupported operand 231``, because byte 0xe7 is no pickle opcode. So when torch refuses,
the file is read again here, without unpickling anything (``pickletools`` only decodes
opcodes): a pickle that imports something other than torch's tensor rebuilders is called
unsafe and what it would call is named; a file whose pickle cannot even be decoded, or a
damaged zip archive, is called corrupt or truncated.
"""

from __future__ import annotations

import io
import pickletools
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Globals a plain ``torch.save`` of tensors, dicts and lists refers to (torch's rebuild
#: functions and storage types, OrderedDict for state_dicts): naming these is not unsafe.
SAFE_GLOBAL_MODULES = ("torch", "torch.")
SAFE_GLOBALS = frozenset({"collections OrderedDict", "_codecs encode", "builtins set"})
NO_CENTRAL_DIRECTORY = "its zip archive has no central directory"
#: A refused file whose pickles decode and name only torch's globals: damaged past them.
UNREBUILDABLE = "the file is corrupt: its pickles decode, but torch cannot rebuild the tensors"
#: Pickle opcodes that push a string (STACK_GLOBAL takes its module and name from two of them).
_STRING_OPS = frozenset(
    {
        "SHORT_BINUNICODE",
        "BINUNICODE",
        "BINUNICODE8",
        "UNICODE",
        "SHORT_BINSTRING",
        "BINSTRING",
        "STRING",
    }  # fmt: skip
)


@dataclass(frozen=True)
class Verdict:
    """What a refused file is: ``unsafe`` (with the globals it would call) or ``corrupt``."""

    unsafe: bool
    reason: str  # "it calls posix.system" / "byte 0 (0xe7) is not a pickle opcode" ...


def inspect_pickle(path: str | Path) -> Verdict:
    """Decode the pickle(s) of a torch file or plain pickle without running any of it."""
    data = Path(path).read_bytes()
    if data.startswith(b"PK\x03\x04"):  # torch.save's default format: a zip archive
        if not zipfile.is_zipfile(io.BytesIO(data)):
            return Verdict(False, f"the file is truncated or corrupt: {NO_CENTRAL_DIRECTORY}")
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                names = [name for name in archive.namelist() if name.endswith("/data.pkl")]
                if not names:
                    return Verdict(False, "the file is a zip archive without torch's data.pkl")
                data = archive.read(names[0])
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            return Verdict(False, f"the file is corrupt: its zip archive is damaged ({error})")
    # A legacy torch file is several pickles in a row (magic number, protocol, system info,
    # the object, storage keys) followed by raw tensor bytes; a plain pickle is one.
    stream = io.BytesIO(data)
    callees: list[str] = []
    decoded = 0
    while stream.tell() < len(data):
        start = stream.tell()
        try:
            callees += _globals(stream)
        except _Truncated:
            return Verdict(False, "the file is truncated: it ends in the middle of a pickle")
        except ValueError as error:
            if decoded == 0:
                return Verdict(False, f"the file is corrupt: {_describe(error, data, start)}")
            break  # the raw tensor bytes of a legacy file: not a pickle
        decoded += 1
    unsafe = [name for name in dict.fromkeys(callees) if not _is_safe(name)]
    if unsafe:
        return Verdict(True, "it calls " + ", ".join(name.replace(" ", ".") for name in unsafe))
    if decoded == 1:
        return Verdict(False, "the file is a plain pickle of data, not from torch.save")
    return Verdict(False, UNREBUILDABLE)


class _Truncated(ValueError):
    """The data end before the pickle does."""


def _globals(stream: io.BytesIO) -> list[str]:
    """The ``"module name"`` of every global one pickle imports; ValueError if undecodable."""
    found: list[str] = []
    strings: list[str] = []
    try:
        for opcode, argument, _ in pickletools.genops(stream):
            if opcode.name in ("GLOBAL", "INST"):
                found.append(str(argument))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]} {strings[-1]}")
            elif opcode.name in _STRING_OPS:
                strings.append(str(argument))
            if opcode.name == "STOP":
                return found
    except ValueError as error:
        if "exhausted" in str(error) or "not enough data" in str(error):
            raise _Truncated(str(error)) from error
        raise
    except UnicodeDecodeError as error:  # a string opcode over bytes that are no string
        raise ValueError(f"undecodable bytes where a string belongs: {error.reason}") from error
    raise _Truncated("the pickle ends before its STOP opcode")


def _is_safe(name: str) -> bool:
    module = name.split(" ", 1)[0]
    return name in SAFE_GLOBALS or module == "torch" or module.startswith(SAFE_GLOBAL_MODULES[1])


def _describe(error: ValueError, data: bytes, start: int) -> str:
    text = str(error)
    if start == 0 and data and "unknown" in text.lower():
        return f"byte 0 (0x{data[0]:02x}) is not a pickle opcode"
    return text


def load_weights_only(path: str | Path, what: str, hint: str = "") -> Any:
    """``torch.load(path, weights_only=True)`` with errors that name the file and the problem.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is a directory, is unsafe (unpickling it would execute code:
            the message names what it calls), or is corrupt, truncated or no torch file.
            ``hint`` (what to do instead) ends the message of an unsafe file.
    """
    import torch

    source = Path(path)
    if not source.exists():
        raise FileNotFoundError(f"{path}: {what} not found")
    if source.is_dir():
        raise ValueError(f"{path}: expected a {what} file, found a directory")
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch's errors for bad files range from KeyError to EOFError
        verdict = inspect_pickle(source)
        if verdict.unsafe:
            raise ValueError(
                f"{path}: refused to load {what}: unpickling it would execute code "
                f"({verdict.reason}). {hint}".rstrip()
            ) from exc
        reason = verdict.reason
        if reason == UNREBUILDABLE and (isinstance(exc, EOFError) or "EOF" in str(exc)):
            reason = "the file is truncated: its tensor data end early"
        raise ValueError(
            f"{path}: cannot read {what}: {reason}; not a valid torch.save file "
            f"(torch: {_torch_detail(exc)})"
        ) from exc


def _torch_detail(exc: BaseException) -> str:
    """The line of torch's (often long) message that says what it tripped over."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "nsupported" in line or "failed" in line.lower():
            if not line.startswith("Weights only load failed"):
                return line.split(". ", 1)[0]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
