"""Package data: the demo model (models/demo-ort), the systemd unit with its README and env example
(systemd/: a symlink to the checkout's top-level systemd/, the one copy); the device profiles live
beside the settings, in edge/config/profiles (a symlink to the top-level devices/).

Everything shipped is found with importlib.resources, so it is wherever the package is: a source
checkout, an editable install or an installed wheel. Model folders are opened by the runtimes by
path, so shipped files must be real files: an install the package cannot be read from as files
(a zip) is refused with a clear error instead.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

# A settings path that starts with this names a file inside the installed `edge` package, wherever
# that is installed: `model.path = "package:assets/models/demo-ort"` (see edge/config/sources.py).
PACKAGE_PREFIX = "package:"


def package_file(relative: str, package: str = "edge") -> Path:
    """`relative` ('/'-separated, inside `package`) as a file-system path; it need not exist."""
    node = files(package).joinpath(*[part for part in relative.split("/") if part])
    if not isinstance(node, Path):
        raise FileNotFoundError(
            f"{package} is not installed as plain files ({type(node).__name__}); "
            f"{relative} cannot be used from this install: reinstall it unzipped (pip install)"
        )
    return node
