"""Bytes on the image topic at each size and JPEG quality, as `[link] image_max_edge` and
`image_quality` produce them (the daemon's own resize and encoder), with the MQTT 5 PUBLISH around.

Two kinds of frame bound what a real scene costs: the test pattern (flat synthetic shapes: the least
a JPEG can be) and the same frame with Gaussian noise of sigma 6 added at the delivered size (detail
in every pixel, like grain, foliage or gravel: close to the most). Real scenes fall in between, nearer
the second outdoors. Run: `python benchmarks/field_bytes.py`.
"""

from __future__ import annotations

import numpy as np

from edge.capture.testsrc import render_frame
from edge.imaging.frames import prepare_image
from edge.imaging.imageio import encode_jpeg
from edge.mqtt.wire import publish_bytes

TOPIC = "edge/cam-01/main/caption/image"
PROPS = 120  # content type, user properties (id, device): as measured on the daemon's image topic
EDGES = (None, 1280, 640, 320, 160)
QUALITIES = (85, 70, 50, 30)


def noisy(img: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.clip(img.astype(np.float32) + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


def main() -> None:
    frame = render_frame(12, 1920, 1080, 15.0)
    for name, detail in (("test pattern", False), ("with noise at the delivered size", True)):
        print(f"\n{name} (1920x1080 source)")
        print("| longer edge | " + " | ".join(f"q{q}" for q in QUALITIES) + " |")
        print("|---|" + "---|" * len(QUALITIES))
        for edge in EDGES:
            img = prepare_image(frame, edge)
            img = noisy(img) if detail else img
            row = []
            for q in QUALITIES:
                jpeg = encode_jpeg(img, 8 << 20, quality=q)
                row.append(f"{(publish_bytes(TOPIC, jpeg, 1, v5=True) + PROPS) / 1024:.1f} KiB")
            label = f"{max(img.shape[:2])} px" + (" (full)" if edge is None else "")
            print(f"| {label} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
