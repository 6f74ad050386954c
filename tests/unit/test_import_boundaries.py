"""The package walls of docs/architecture.md ("Who may import whom"), held by a test instead of by review.

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
    # the bench's bare baseline, inside the package that owns the runtimes, calls each runtime directly
    # (that is what it measures) and imports no edge code
    "onnxruntime_genai": ("edge/inference/ort_genai.py", "edge/inference/bare_loop.py"),
    "onnxruntime": ("edge/inference/ort_genai.py",),
    "onnxruntime_ep_openvino": ("edge/inference/ort_genai.py",),
    "openvino": ("edge/inference/openvino_genai.py", "edge/inference/bare_loop.py"),
    "openvino_genai": ("edge/inference/openvino_genai.py", "edge/inference/bare_loop.py"),
    "openvino_tokenizers": ("edge/inference/openvino_genai.py",),
    "httpx": ("edge/inference/http_backend.py",),
    "httpx_sse": ("edge/inference/http_backend.py",),
    "httpcore": ("edge/inference/http_backend.py",),
    "openai": ("edge/inference/http_backend.py",),
    "prometheus_client": ("edge/daemon/metrics.py",),  # only when [metrics] port is set
    "psycopg": ("edge/view/store_pg.py",),
    "jmespath": (
        "edge/config/conditions.py",
    ),  # alert conditions, compiled when settings load  # only for a PostgreSQL store ([view] extra)
}

# Which edge packages each package may import, besides its own modules. "" is edge/__init__.py (the
# version). Every package is listed; docs/architecture.md ("Who may import whom") is this table in words.
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset(),  # the bottom: not even the root package
    "": frozenset({"core"}),
    "assets": frozenset({"core"}),
    "config": frozenset({"core", "assets", ""}),
    "imaging": frozenset({"core", "config"}),
    "capture": frozenset({"core", "config", "imaging"}),
    "serial": frozenset({"core", "config"}),
    "mqtt": frozenset({"core", "config", ""}),
    "consumer": frozenset({"core", "config", "mqtt"}),
    "inference": frozenset({"core", "config", "imaging"}),
    "pipeline": frozenset({"core", "config", "imaging", "inference", "mqtt"}),
    "power": frozenset({"core", "config"}),
    "view": frozenset({"core", "config", "mqtt", "consumer"}),
    "daemon": frozenset(
        {"core", "", "assets", "config", "capture", "serial", "mqtt", "inference", "pipeline", "power"}
    ),
    "cli": frozenset(
        {
            "core",
            "",
            "assets",
            "config",
            "imaging",
            "capture",
            "serial",
            "mqtt",
            "consumer",
            "inference",
            "pipeline",
            "power",
            "view",
        }
    ),
}

# The daemon is the composition root: nothing imports it, except the CLI's `run` branch, and that only
# inside a function, so that `edge --help` and the other commands never load the daemon.
DAEMON_LAZY_IMPORTERS: tuple[str, ...] = ("edge/cli/main.py",)

# Repository folders that edge never imports (fixture tools, tests, benchmark scripts).
NEVER_IMPORTED: tuple[str, ...] = ("tools", "tests", "benchmarks")

DYNAMIC_IMPORT_CALLS = ("import_module",)


@dataclass(frozen=True)
class Import:
    file: str  # "edge/cli/main.py"
    line: int
    module: str  # absolute dotted name
    dynamic: bool  # by a string at run time
    lazy: bool = False  # inside a function body: runs when the function does, not at import

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
    tree = ast.parse(path.read_text(), filename=file)
    in_function = {
        id(inner)
        for fn in ast.walk(tree)
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for inner in ast.walk(fn)
        if inner is not fn
    }
    for node in ast.walk(tree):
        lazy = id(node) in in_function
        if isinstance(node, ast.Import):
            found += [Import(file, node.lineno, alias.name, False, lazy) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = here.split(".")
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append(Import(file, node.lineno, module, False, lazy))
            if module == "edge":  # `from edge import daemon` names the package after `import`
                found += [Import(file, node.lineno, f"edge.{a.name}", False, lazy) for a in node.names]
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in DYNAMIC_IMPORT_CALLS and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.append(Import(file, node.lineno, arg.value, True, lazy))
    return found


def _all_imports() -> list[Import]:
    return [imp for path in sorted(EDGE.rglob("*.py")) for imp in _imports(path)]


def _owned_by(file: str, owners: tuple[str, ...]) -> bool:
    return any(file.startswith(o) if o.endswith("/") else file == o for o in owners)


def _target(module: str) -> str | None:
    """The edge package a dotted name lies in ("" for edge/__init__.py), or None outside edge."""
    parts = module.split(".")
    if parts[0] != "edge":
        return None
    return parts[1] if len(parts) > 1 and (EDGE / parts[1]).is_dir() else ""


def package_graph(imports: list[Import]) -> dict[str, set[str]]:
    """Package -> the other edge packages it imports (any import, lazy or dynamic included)."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        dst = _target(imp.module)
        src = _package_of(imp.file)
        if dst is not None and dst != src:
            graph.setdefault(src, set()).add(dst)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle between packages, each once, as the packages in order (first repeated at the end)."""
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()

    def walk(path: list[str]) -> None:
        for nxt in sorted(graph.get(path[-1], ())):
            if nxt == path[0]:
                key = frozenset(path)
                if key not in seen:
                    seen.add(key)
                    found.append([*path, nxt])
            elif nxt not in path and nxt > path[0]:  # each cycle from its smallest member only
                walk([*path, nxt])

    for start in sorted(graph):
        walk([start])
    return found


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
        dst = _target(imp.module)
        if dst is None or dst == src:
            continue
        if dst == "daemon":
            if not (imp.lazy and imp.file in DAEMON_LAZY_IMPORTERS):
                out.append(
                    f"{imp.where()}: imports {imp.module}; nothing imports the daemon "
                    f"(only {', '.join(DAEMON_LAZY_IMPORTERS)}, inside a function)"
                )
            continue
        allowed = ALLOWED.get(src)
        if allowed is None:
            out.append(f"{imp.where()}: package edge/{src}/ has no ALLOWED entry: add one")
        elif dst not in allowed:
            out.append(
                f"{imp.where()}: edge.{src or '__init__'} imports {imp.module}; "
                f"edge.{src or '__init__'} may import only {', '.join(sorted(p or 'edge' for p in allowed)) or 'nothing of edge'}"
            )
    for cycle in cycles(package_graph(imports)):
        out.append(f"import cycle between packages: {' -> '.join(p or 'edge' for p in cycle)}")
    return out


def test_edge_keeps_its_walls() -> None:
    found = violations(_all_imports())
    assert not found, "import boundaries broken:\n" + "\n".join(found)


def test_every_package_has_its_allowed_list() -> None:
    packages = {p.name for p in EDGE.iterdir() if (p / "__init__.py").exists()}
    assert packages | {""} == set(ALLOWED), sorted((packages | {""}) ^ set(ALLOWED))


def test_the_allowed_lists_have_no_cycle() -> None:
    """The rules themselves are acyclic, so a cycle can only come from an import they forbid."""
    graph = {src: set(dst) for src, dst in ALLOWED.items()}
    assert not cycles(graph), cycles(graph)


def test_a_cycle_between_packages_is_caught() -> None:
    """The checker itself: two packages importing each other fail, whatever the allowed lists say."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"x": {"y"}, "y": set()}) == []


def test_the_walker_sees_lazy_and_dynamic_imports(tmp_path: Path) -> None:
    """The checker itself: a function-level SDK import, a string import of the daemon, an import of a
    package not on the list and a module-level daemon import in the one file allowed a lazy one are caught."""
    src = tmp_path / "edge" / "pipeline" / "x.py"
    src.parent.mkdir(parents=True)
    src.write_text(
        "def f():\n"
        "    import cv2\n"
        "    from paho.mqtt import client\n"
        "    importlib.import_module('edge.daemon.app')\n"
        "from edge.cli.main import main\n"
        "from edge.capture import grabber\n"
    )
    cli = tmp_path / "edge" / "cli" / "main.py"
    cli.parent.mkdir(parents=True)
    cli.write_text("from edge.daemon.app import run\ndef f():\n    from edge.daemon.app import run\n")
    found = violations(_imports(src, tmp_path) + _imports(cli, tmp_path))
    assert any(v.startswith("edge/cli/main.py:1:") for v in found), found
    assert not any(v.startswith("edge/cli/main.py:3:") for v in found), found
    for line in (2, 3, 4, 5, 6):
        assert any(v.startswith(f"edge/pipeline/x.py:{line}:") for v in found), (line, found)


@pytest.mark.parametrize("module", sorted(THIRD_PARTY_OWNERS))
def test_each_owner_exists(module: str) -> None:
    """A rule naming a moved or deleted module would guard nothing."""
    for owner in THIRD_PARTY_OWNERS[module]:
        assert (EDGE.parent / owner).exists(), f"{module}: owner {owner} does not exist"
