"""What a stage's output is made with: a fingerprint of its code and its packages' versions.

Snakemake reruns a job when its params, inputs or script change, but the scripts are one-line
adapters: an edit of ``mobileforge/quantize/fx.py`` or an upgrade of executorch would plan
nothing. So every rule passes ``toolchain(<stage>)`` (rules/common.smk) as a param: the code
fingerprint and package versions of the stage function it runs (:func:`job_toolchain`).

Computed while the DAG is built, without importing any of that code: it is read with ``ast``
and versions come from package metadata. Once per stage and process (cached).

The code a stage runs, at the granularity of top-level definitions ("units"):

- the stage function (where ``mobileforge.stages.STAGES`` says it lives) and the adapter every
  job passes (``mobileforge.job:run``);
- every definition a reached unit names: a helper of its own module, or a name imported from a
  mobileforge module (inside functions too: they run when called), transitively. A string
  naming a mobileforge module (a zoo entry ``"mobileforge.models.resnet:resnet18"``, a runner
  started with ``-m mobileforge.bench.host.runner``) counts as a reference;
- what importing those modules executes: each module's top-level statements other than
  definitions and imports, and that of its packages and of the modules it imports.

Units are compared by their syntax tree without docstrings, so comments, docstrings and
formatting rerun nothing, while editing ``quantize_static`` reruns the jobs that call it (and,
through their outputs, everything downstream) but not ``fuse``, whose module merely imports
``mobileforge.quantize.fx``.

Packages: the third-party top-level imports of that code (stdlib excluded), by installed
distribution and full version (a local tag such as ``+cpu`` is another build). One refinement:
a stage shared by both formats reaches both runtimes, but a job on a ``.ptl`` artifact runs no
ExecuTorch (:data:`EXCLUSIVE_PACKAGES`).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGE = "mobileforge"
PACKAGE_ROOT = Path(__file__).resolve().parent
STAGES_PACKAGE = f"{PACKAGE}.stages"
#: Units every job runs besides its stage function: the scripts' adapter.
ADAPTER_UNITS = ((f"{PACKAGE}.job", "run"),)
#: Packages only jobs with this wildcard value run, although the stage's code reaches them: a
#: job with another value of that wildcard does not depend on them. ``evaluate`` and the
#: benchmarks pick their runtime by the artifact's format; only Core ML converts with
#: coremltools.
EXCLUSIVE_PACKAGES: dict[tuple[str, str], tuple[str, ...]] = {
    ("fmt", "pte"): ("executorch", "torchao", "coremltools"),
    ("backend", "coreml"): ("coremltools",),
}
#: Import names whose distribution is named differently (others are looked up in metadata).
DISTRIBUTIONS = {"PIL": "pillow", "yaml": "PyYAML", "sklearn": "scikit-learn"}
NOT_INSTALLED = "not installed"

_MODULE_STRING = re.compile(rf"^{PACKAGE}(\.[A-Za-z_]\w*)+(:[A-Za-z_][\w.]*)?$")
_STDLIB = frozenset(sys.stdlib_module_names)
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


@dataclass(frozen=True)
class Fingerprint:
    """The code a stage runs (``code``: sha256 of its units) and the packages it imports."""

    stage: str
    code: str
    units: tuple[str, ...]  # "module:name" of every unit reached, sorted (to explain a rerun)
    packages: tuple[tuple[str, str], ...]  # (distribution, version), sorted


# A reference to code: ("module", name) a whole module, ("symbol", module, name) one of its
# top-level names, ("star", module) everything ``from module import *`` binds, ("external",
# top-level package).
_Target = tuple[str, ...]


class _Module:
    """One mobileforge module read with ``ast``: its definitions, imports and import-time code."""

    def __init__(self, name: str, path: Path, root: Path) -> None:
        self.name = name
        self.root = root
        self.is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        _strip_docstrings(tree)
        self.defs: dict[str, list[ast.AST]] = {}
        self.bindings: dict[str, _Target] = {}  # top-level import bindings
        self.imports: list[_Target] = []  # what importing this module imports in turn
        self.prelude: list[ast.AST] = []  # statements run on import that are not definitions
        for statement in tree.body:
            if isinstance(statement, ast.Import | ast.ImportFrom):
                self._bind_top_level(statement)
            elif isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                self.defs.setdefault(statement.name, []).append(statement)
            elif isinstance(statement, ast.Assign | ast.AnnAssign) and _simple_targets(statement):
                for target in _simple_targets(statement):
                    self.defs.setdefault(target, []).append(statement)
            else:  # if / try / with / calls at top level: run on import
                self.prelude.append(statement)
                for node in ast.walk(statement):
                    if isinstance(node, ast.Import | ast.ImportFrom):
                        self._bind_top_level(node)
                    elif isinstance(node, _DEFINITIONS):
                        self.defs.setdefault(node.name, [])  # its code is in the prelude
                    elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
                        self.defs.setdefault(node.id, [])

    def _bind_top_level(self, node: ast.Import | ast.ImportFrom) -> None:
        bound, executed = self.bind(node)
        self.bindings.update(bound)
        self.imports.extend(executed)

    def bind(self, node: ast.Import | ast.ImportFrom) -> tuple[dict[str, _Target], list[_Target]]:
        """The names an import statement binds (and what each is), and what it imports."""
        bound: dict[str, _Target] = {}
        if isinstance(node, ast.Import):
            executed: list[_Target] = []
            for alias in node.names:
                if not _is_ours(alias.name):
                    target = _external(alias.name)
                    bound[alias.asname or alias.name.split(".")[0]] = target
                    executed.append(target)
                    continue
                executed.append(("module", alias.name))
                # ``import a.b`` binds ``a`` (used as ``a.b.f``); ``import a.b as c`` binds a.b.
                bound[alias.asname or PACKAGE] = ("module", alias.name if alias.asname else PACKAGE)
            return bound, executed
        source = self._absolute(node)
        if _is_ours(source) and any(alias.name == "*" for alias in node.names):
            return {}, [("star", source)]  # names unknown here: the whole module counts
        for alias in node.names:
            local = alias.asname or alias.name
            if not _is_ours(source):
                bound[local] = _external(source)
            elif _module_path(f"{source}.{alias.name}", self.root) is not None:
                bound[local] = ("module", f"{source}.{alias.name}")
            else:
                bound[local] = ("symbol", source, alias.name)
        return bound, list(bound.values())

    def _absolute(self, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = self.name.split(".")
        if not self.is_package:
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))


def _simple_targets(statement: ast.Assign | ast.AnnAssign) -> list[str]:
    """The names an assignment binds (``a = ``, ``a, b = ``); [] if it also sets attributes."""
    targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
    names = []
    for target in targets:
        parts = target.elts if isinstance(target, ast.Tuple | ast.List) else [target]
        if not all(isinstance(part, ast.Name) for part in parts):
            return []
        names += [part.id for part in parts]
    return names


def _strip_docstrings(node: ast.AST) -> None:
    # Only the module's and its definitions' (nested in classes and functions) docstrings:
    # walking every expression of every file would cost more than the analysis itself.
    body = getattr(node, "body", None)
    if not isinstance(body, list):
        return
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        if isinstance(body[0].value.value, str):
            node.body = body = body[1:] or [ast.Pass()]
    for child in body:
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            _strip_docstrings(child)


def _is_ours(module: str) -> bool:
    return module == PACKAGE or module.startswith(f"{PACKAGE}.")


def _external(module: str) -> _Target:
    return ("external", module.split(".")[0])


def _module_path(module: str, root: Path) -> Path | None:
    if not _is_ours(module):
        return None
    path = root.joinpath(*module.split(".")[1:])
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


@functools.cache
def _load(module: str, root: Path) -> _Module | None:
    path = _module_path(module, root)
    return _Module(module, path, root) if path is not None else None


@dataclass(frozen=True)
class _Unit:
    """One unit analysed: the digest of its code and the units and packages it refers to."""

    digest: str
    refers_to: tuple[tuple[str, str], ...]  # (module, name); name "*" whole, "<import>" import
    externals: frozenset[str]


@functools.cache
def _unit(module: str, name: str, root: Path) -> _Unit | None:
    """Analyse one unit of ``module`` (cached: stages share most of their code)."""
    info = _load(module, root)
    if info is None:
        return None
    refs: list[tuple[str, str]] = []
    externals: set[str] = set()
    # Importing a module runs its packages' __init__ and its own top-level code first.
    parts = module.split(".")
    refs += [(".".join(parts[:end]), "<import>") for end in range(1, len(parts) + 1)]
    nodes: list[ast.AST] = []
    if name == "<import>":
        nodes = info.prelude
        for target in info.imports:
            _resolve(info, target, [], False, refs, externals)
    elif name == "*":
        refs += [(module, defined) for defined in info.defs]
    elif name in info.defs:
        nodes = info.defs[name]
    elif name in info.bindings:  # re-exported from another module
        _resolve(info, info.bindings[name], [], True, refs, externals)
    elif _load(f"{module}.{name}", root) is not None:
        refs.append((f"{module}.{name}", "*"))
    else:  # defined some other way (globals(), setattr): take the module whole
        refs.append((module, "*"))
    digest = hashlib.sha256()
    for node in nodes:
        scan = _Scan(node)
        digest.update("\x1f".join(scan.text).encode())
        _references(info, node, scan, refs, externals)
    return _Unit(digest.hexdigest(), tuple(dict.fromkeys(refs)), frozenset(externals))


def _references(
    info: _Module,
    node: ast.AST,
    found: _Scan,
    refs: list[tuple[str, str]],
    externals: set[str],
) -> None:
    local: dict[str, _Target] = {}
    for statement in found.imports:
        bound, executed = info.bind(statement)
        local.update(bound)
        for target in executed:  # importing runs the module even if nothing is used
            _resolve(info, target, [], False, refs, externals)
    shadowed = found.bound if isinstance(node, _DEFINITIONS) else set()
    for name, attrs in found.chains:
        target = local.get(name)
        if target is None and name not in shadowed:
            target = info.bindings.get(name)
            if target is None and name in info.defs:
                target = ("symbol", info.name, name)
        if target is not None:
            _resolve(info, target, attrs, True, refs, externals)
    for text in found.strings:
        module, _, attr = text.partition(":")
        if _load(module, info.root) is not None:
            refs.append((module, attr.split(".")[0] if attr else "*"))


def _resolve(
    info: _Module,
    target: _Target,
    attrs: list[str],
    used: bool,
    refs: list[tuple[str, str]],
    externals: set[str],
) -> None:
    """Turn a reference (``used``, or only imported) into the units it needs."""
    kind = target[0]
    if kind == "external":
        externals.add(target[1])
        return
    if kind == "star":
        refs.append((target[1], "*"))
        return
    if kind == "symbol":
        refs.append((target[1], target[2] if used else "<import>"))
        return
    module = target[1]
    for attr in attrs:
        if _load(f"{module}.{attr}", info.root) is None:
            refs.append((module, attr))
            return
        module = f"{module}.{attr}"
    # The module itself is used (all of it counts) or only imported (what importing runs).
    refs.append((module, "*" if used else "<import>"))


class _Scan:
    """One pass over a syntax tree: a canonical text of it without positions (what the digest
    is taken of; ``ast.dump`` is several times slower), and the dotted names, strings naming
    mobileforge modules and import statements in it."""

    def __init__(self, node: ast.AST) -> None:
        self.text: list[str] = []
        self.chains: list[tuple[str, list[str]]] = []  # ("chain", ["load_fused_model"]) ...
        self.strings: list[str] = []
        self.imports: list[ast.Import | ast.ImportFrom] = []
        # Names bound inside the unit (assigned, parameters, nested definitions): inside a
        # function they are locals, which shadow module-level names of the same spelling.
        self.bound: set[str] = set()
        stack: list[Any] = [node]
        text, chains, bound = self.text, self.chains, self.bound
        while stack:
            item = stack.pop()
            kind = type(item)
            if kind is ast.Name:
                if type(item.ctx) is ast.Load:
                    chains.append((item.id, []))
                else:
                    bound.add(item.id)
                text.append(f"N:{item.id}")
            elif kind is ast.Attribute:
                parts = []
                current = item
                while type(current) is ast.Attribute:
                    parts.append(current.attr)
                    current = current.value
                parts.reverse()
                if type(current) is ast.Name:  # a dotted name: one reference, not two
                    chains.append((current.id, parts))
                    text.append(f"A:{current.id}.{'.'.join(parts)}")
                else:
                    text.append(f"A:.{'.'.join(parts)}")
                    stack.append(current)
            elif kind is ast.Constant:
                value = item.value
                text.append(f"C:{value!r}")
                if isinstance(value, str) and _MODULE_STRING.match(value):
                    self.strings.append(value)
            elif isinstance(item, ast.AST):
                if kind is ast.Import or kind is ast.ImportFrom:
                    self.imports.append(item)
                elif kind is ast.arg:
                    bound.add(item.arg)
                elif kind in _DEFINITIONS and item is not node:
                    bound.add(item.name)
                elif kind is ast.ExceptHandler and item.name:
                    bound.add(item.name)
                text.append(kind.__name__)
                stack.extend(getattr(item, field, None) for field in reversed(item._fields))
            elif kind is list:
                text.append(f"[{len(item)}")
                stack.extend(reversed(item))
            else:
                text.append(repr(item))


@functools.cache
def stage_homes(root: Path = PACKAGE_ROOT) -> dict[str, tuple[str, str]]:
    """Each stage's (module, function), read from ``STAGES`` in ``mobileforge/stages/__init__.py``
    under ``root`` with ``ast`` (nothing imported); {} where there is no such package."""
    path = _module_path(STAGES_PACKAGE, root)
    if path is None:
        return {}
    for statement in ast.parse(path.read_text(encoding="utf-8"), str(path)).body:
        target = statement.target if isinstance(statement, ast.AnnAssign) else None
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target = statement.targets[0]
        if isinstance(target, ast.Name) and target.id == "STAGES" and statement.value is not None:
            homes = ast.literal_eval(statement.value)
            return {
                stage: (f"{STAGES_PACKAGE}.{home.partition(':')[0]}", home.partition(":")[2])
                for stage, home in homes.items()
            }
    raise ValueError(f"{path}: no STAGES registry (a dict literal) found")


def stage_names(root: Path = PACKAGE_ROOT) -> list[str]:
    """The stages of the ``mobileforge`` package under ``root``: the keys of its registry."""
    return list(stage_homes(root))


@functools.cache
def stage_fingerprint(stage: str, root: Path = PACKAGE_ROOT) -> Fingerprint:
    """The :class:`Fingerprint` of the stage function ``stage`` (cached per process).

    ``root`` is the ``mobileforge`` package directory to read. Raises ``ValueError`` when its
    registry has no such stage.
    """
    homes = stage_homes(root)
    if stage not in homes:
        raise ValueError(f"{STAGES_PACKAGE} ({root}) has no stage {stage!r}")
    module, function = homes[stage]
    found = _load(module, root)
    if found is None or not any(
        isinstance(n, ast.FunctionDef) for n in found.defs.get(function, [])
    ):
        raise ValueError(
            f"{STAGES_PACKAGE}.STAGES places stage {stage!r} at {module}:{function}, "
            "which is not a function there"
        )
    seen: dict[tuple[str, str], _Unit] = {}
    todo = [homes[stage], *ADAPTER_UNITS]
    while todo:
        key = todo.pop()
        if key in seen:
            continue
        unit = _unit(*key, root)
        if unit is None:
            continue
        seen[key] = unit
        todo.extend(ref for ref in unit.refers_to if ref not in seen)
    digest = hashlib.sha256()
    for module, name in sorted(seen):
        digest.update(f"{module}:{name}={seen[module, name].digest}\n".encode())
    externals = set().union(*(unit.externals for unit in seen.values())) - _STDLIB
    packages = sorted((_distribution(name), _version(name)) for name in externals)
    units = tuple(f"{module}:{name}" for module, name in sorted(seen))
    return Fingerprint(stage, digest.hexdigest()[:16], units, tuple(packages))


@functools.cache
def _distribution(import_name: str) -> str:
    name = DISTRIBUTIONS.get(import_name, import_name)
    try:
        metadata.version(name)
        return name
    except metadata.PackageNotFoundError:
        # Slow (reads every installed distribution's file list): names not in DISTRIBUTIONS.
        found = metadata.packages_distributions().get(import_name)
        return found[0] if found else name


@functools.cache
def _version(import_name: str) -> str:
    try:
        return metadata.version(_distribution(import_name))
    except metadata.PackageNotFoundError:
        return NOT_INSTALLED


@functools.cache
def _toolchain(stage: str, exclusive_mismatches: frozenset[tuple[str, str]]) -> dict[str, Any]:
    fingerprint = stage_fingerprint(stage)
    dropped = {package for key in exclusive_mismatches for package in EXCLUSIVE_PACKAGES[key]}
    return {
        "code": fingerprint.code,
        "packages": {
            name: version for name, version in fingerprint.packages if name not in dropped
        },
    }


def job_toolchain(stage: str, wildcards: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The rerun trigger of one job of a rule running the stage ``stage``: plain builtins.

    ``{"code": <16 hex digits>, "packages": {distribution: version}}``, without the packages
    :data:`EXCLUSIVE_PACKAGES` reserves for other values of the job's ``wildcards``.
    """
    wildcards = wildcards or {}
    mismatches = frozenset(
        (key, value)
        for key, value in EXCLUSIVE_PACKAGES
        if key in wildcards and wildcards[key] != value
    )
    return _toolchain(stage, mismatches)


def describe(stages: Iterable[str]) -> str:
    """Human-readable fingerprints (``python -m mobileforge.fingerprint quantize ...``)."""
    lines = []
    for stage in stages:
        fingerprint = stage_fingerprint(stage)
        lines.append(f"{stage}: code {fingerprint.code}")
        lines += [f"  package {name} {version}" for name, version in fingerprint.packages]
        lines += [f"  unit {unit}" for unit in fingerprint.units]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - a debugging aid
    print(describe(sys.argv[1:]))
