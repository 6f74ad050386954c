"""The package walls of DESIGN.md ("Package layout (v2)"), held by a test instead of by review.

Every `import` and `from ... import` under edge/ is read with `ast`, at any depth (function-level
imports included, since the SDKs are imported lazily), plus `importlib.import_module("...")` and
the CLI's `_call("module", ...)` with a literal module name. A violation fails naming file:line.
The rules are data, first in this file: changing a wall means changing a line here, in review.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

EDGE = Path(__file__).resolve().parents[2] / "edge"

# Third-party libraries each confined to the package or module that owns it:
# top-level import name -> the edge/ paths (a folder ending in "/" or one file) allowed to import it.
THIRD_PARTY_OWNERS: dict[str, tuple[str, ...]] = {
    "paho": ("edge/mqtt/",),
    "cv2": ("edge/imaging/opencv.py",),  # sets its limits and log levels before the import
    "onnxruntime_genai": ("edge/inference/ort_genai.py",),
    "onnxruntime": ("edge/inference/ort_genai.py",),
    "onnxruntime_ep_openvino": ("edge/inference/ort_genai.py",),
    "openvino": ("edge/inference/openvino_genai.py",),
    "openvino_genai": ("edge/inference/openvino_genai.py",),
    "openvino_tokenizers": ("edge/inference/openvino_genai.py",),
    "httpx": ("edge/inference/http_backend.py",),
    "httpx_sse": ("edge/inference/http_backend.py",),
    "httpcore": ("edge/inference/http_backend.py",),
    "openai": ("edge/inference/http_backend.py",),
    "prometheus_client": ("edge/daemon/metrics.py",),  # only when [metrics] port is set
}

# Layers, lowest first: a package may import its own modules and any package of a LOWER layer;
# the components (one layer) may use each other. `edge` itself (the version) sits with core.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("core", "assets", ""),
    ("config",),
    ("imaging", "capture", "inference", "mqtt", "serial", "consumer", "power"),
    ("pipeline",),
    ("daemon",),
    ("cli",),
)

# edge.core is the bottom: it imports nothing of edge outside core (not even the root package).
CORE_IMPORTS_ONLY_CORE = True

# The daemon is the composition root: nothing imports it but itself, and the CLI only by a string
# (its lazy `_call`), so that `edge --help` and the tools never load the daemon.
DAEMON_DYNAMIC_IMPORTERS: tuple[str, ...] = ("edge/cli/main.py",)

# Repository folders that edge never imports (fixture tools, tests, benchmark scripts).
NEVER_IMPORTED: tuple[str, ...] = ("tools", "tests", "benchmarks")

DYNAMIC_IMPORT_CALLS = ("import_module", "_call")


@dataclass(frozen=True)
class Import:
    file: str  # "edge/cli/main.py"
    line: int
    module: str  # absolute dotted name
    dynamic: bool  # by a string at run time

    def where(self) -> str:
        return f"{self.file}:{self.line}"


def _package_of(file: str) -> str:
    """edge/mqtt/client.py -> mqtt; edge/__init__.py -> "" (the root package)."""
    parts = file.split("/")
    return parts[1] if len(parts) > 2 else ""


def _dotted(file: str) -> str:
    mod = file.removesuffix(".py").replace("/", ".")
    return mod.removesuffix(".__init__")


def _imports(path: Path, root: Path = EDGE.parent) -> list[Import]:
    """Every import in one file; `root` is the folder holding edge/ (a tmp tree in the self-test)."""
    file = path.relative_to(root).as_posix()
    here = _dotted(file)
    is_pkg = path.name == "__init__.py"
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=file)):
        if isinstance(node, ast.Import):
            found += [Import(file, node.lineno, alias.name, False) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = here.split(".")
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append(Import(file, node.lineno, module, False))
            if module == "edge":  # `from edge import daemon` names the package after `import`
                found += [Import(file, node.lineno, f"edge.{a.name}", False) for a in node.names]
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in DYNAMIC_IMPORT_CALLS and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.append(Import(file, node.lineno, arg.value, True))
    return found


def _all_imports() -> list[Import]:
    return [imp for path in sorted(EDGE.rglob("*.py")) for imp in _imports(path)]


def _owned_by(file: str, owners: tuple[str, ...]) -> bool:
    return any(file.startswith(o) if o.endswith("/") else file == o for o in owners)


def _layer(package: str) -> int:
    for rank, members in enumerate(LAYERS):
        if package in members:
            return rank
    raise AssertionError(f"package edge/{package}/ is in no layer: add it to LAYERS")


def violations(imports: list[Import]) -> list[str]:
    """Every broken rule, as 'file:line: what'."""
    out: list[str] = []
    for imp in imports:
        top = imp.module.split(".")[0]
        src = _package_of(imp.file)
        owners = THIRD_PARTY_OWNERS.get(top)
        if owners is not None and not _owned_by(imp.file, owners):
            out.append(f"{imp.where()}: imports {imp.module}; only {', '.join(owners)} may")
        if top in NEVER_IMPORTED:
            out.append(f"{imp.where()}: imports {imp.module}; edge never imports {top}/")
        if top != "edge":
            continue
        parts = imp.module.split(".")
        dst = parts[1] if len(parts) > 1 else ""
        if not (EDGE / dst).is_dir():
            dst = ""  # a name from edge/__init__.py (`from edge import __version__`)
        if dst == src:
            continue
        if CORE_IMPORTS_ONLY_CORE and src == "core":
            out.append(f"{imp.where()}: edge.core imports {imp.module}; core imports nothing of edge")
            continue
        if dst == "daemon":
            if not (imp.dynamic and imp.file in DAEMON_DYNAMIC_IMPORTERS):
                out.append(
                    f"{imp.where()}: imports {imp.module}; nothing imports the daemon "
                    f"(only {', '.join(DAEMON_DYNAMIC_IMPORTERS)}, by string)"
                )
            continue
        if _layer(dst) > _layer(src):
            out.append(f"{imp.where()}: edge.{src or '__init__'} imports {imp.module}, a higher layer")
    return out


def test_edge_keeps_its_walls() -> None:
    found = violations(_all_imports())
    assert not found, "import boundaries broken:\n" + "\n".join(found)


def test_every_package_is_in_a_layer() -> None:
    for pkg in sorted(p.name for p in EDGE.iterdir() if (p / "__init__.py").exists()):
        _layer(pkg)


def test_the_walker_sees_lazy_and_dynamic_imports(tmp_path: Path) -> None:
    """The checker itself: a function-level SDK import and a string import of the daemon are caught."""
    src = tmp_path / "edge" / "pipeline" / "x.py"
    src.parent.mkdir(parents=True)
    src.write_text(
        "def f():\n"
        "    import cv2\n"
        "    from paho.mqtt import client\n"
        "    _call('edge.daemon.app', 'run')\n"
        "from edge.cli.main import main\n"
    )
    found = violations(_imports(src, tmp_path))
    for line in (2, 3, 4, 5):
        assert any(v.startswith(f"edge/pipeline/x.py:{line}:") for v in found), (line, found)


@pytest.mark.parametrize("module", sorted(THIRD_PARTY_OWNERS))
def test_each_owner_exists(module: str) -> None:
    """A rule naming a moved or deleted module would guard nothing."""
    for owner in THIRD_PARTY_OWNERS[module]:
        assert (EDGE.parent / owner).exists(), f"{module}: owner {owner} does not exist"
