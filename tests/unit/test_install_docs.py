"""README.md's service block and systemd/README.md's install block are one path: every command the
README gives for the service is a command of the install block, which the service test runs in a
booted Debian 12 (tests/integration/test_systemd_service.py)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _commands(block: str) -> set[str]:
    out: set[str] = set()
    for line in block.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()  # a trailing comment
        if line and not line.startswith("#"):
            out.update(part.strip() for part in line.split(" && "))
    return out


def test_the_readme_service_block_is_the_tested_install() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = [b for b in re.findall(r"```sh\n(.*?)```", readme, re.S) if "edge service unit |" in b]
    assert blocks, "README.md: no ```sh block with `edge service unit |`"
    install = re.search(r"## Install\n.*?```sh\n(.*?)```", (ROOT / "systemd" / "README.md").read_text(), re.S)
    assert install
    tested = _commands(install.group(1)) | {"journalctl -u edge -f"}
    for block in blocks:
        assert _commands(block) <= tested, sorted(_commands(block) - tested)
