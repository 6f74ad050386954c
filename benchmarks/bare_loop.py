"""Bare generation loops straight on the runtime APIs: the baseline our backend layer is measured against.

The loops live in edge/bench_bare.py, which imports nothing of edge, so that `edge bench` on a
board ships them too. They are loaded here by file path (the edge package is not imported), under
the names benchmarks/backend_bench.py uses: ort_load, ort_generate, ov_load, ov_generate.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_PATH = Path(__file__).resolve().parent.parent / "edge" / "bench_bare.py"
_spec = importlib.util.spec_from_file_location("edge_bench_bare", _PATH)
assert _spec is not None and _spec.loader is not None
_bare = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bare)

ort_load = _bare.ort_load
ort_generate = _bare.ort_generate
ov_load = _bare.ov_load
ov_generate = _bare.ov_generate
