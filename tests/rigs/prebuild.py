"""Build the suite's cached rigs side by side before the tests run: on a fresh machine their cold
builds (Home Assistant's venv, the arm64 and the systemd-nspawn rootfs, the transformers-serve venv)
are mostly downloads, so four at once cost about the longest one instead of their sum.

    python -m tests.rigs.prebuild          # `make test` runs it; a no-op when every cache is there

Each rig is built by the same function its tests call, under the same lock, into the same cache
(`$EDGE_TEST_CACHE`, default /var/cache/edge-tests). So nothing here decides a test's outcome: a
rig this script could not build is built again (and fails loudly) by its test, and one it built is
found at once. The exit status is 0 unless the script itself is broken; each rig gets one line.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def _home_assistant() -> str:
    from tests.helpers.home_assistant import ensure_installed

    return str(ensure_installed().directory)


def _openai_server() -> str:
    from tests.rigs.openai_server import ensure_rig

    return str(ensure_rig().root)


def _nspawn() -> str:
    from tests.helpers import nspawn

    missing = nspawn.missing_tools()
    return f"skipped: {missing}" if missing else str(nspawn.rootfs())


def _arm64() -> str:
    from tools import arm64_rig

    missing = arm64_rig.missing_prerequisites()
    if missing:
        return f"skipped: {missing}"
    base = arm64_rig.cache_root() / "arm64-bookworm"
    with arm64_rig.locked(base / ".lock"):
        return str(arm64_rig.ensure_rootfs("bookworm", arm64_rig.Report("bookworm")))


RIGS: dict[str, Callable[[], str]] = {
    "arm64-bookworm": _arm64,  # the longest cold build first
    "home-assistant": _home_assistant,
    "nspawn-bookworm": _nspawn,
    "openai-server": _openai_server,
}


def _timed(name: str, build: Callable[[], str]) -> str:
    t0 = time.monotonic()
    try:
        where = build()
        return f"rig {name}: {where} ({time.monotonic() - t0:.0f} s)"
    except Exception as err:  # the rig's own test builds it again and fails with the whole story
        tail = traceback.format_exception_only(err)[-1].strip()[-300:]
        return f"rig {name}: NOT built ({time.monotonic() - t0:.0f} s): {tail}"


def main() -> int:
    with ThreadPoolExecutor(len(RIGS)) as pool:
        futures = [pool.submit(_timed, name, build) for name, build in RIGS.items()]
        for future in futures:
            print(future.result(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
