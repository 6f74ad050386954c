"""`python -m tests.rigs.openai_server`: build (or find) the cached rig and print where it is."""

import time

from tests.rigs.openai_server import ensure_rig

t0 = time.monotonic()
print(ensure_rig().root, f"{time.monotonic() - t0:.1f} s")
