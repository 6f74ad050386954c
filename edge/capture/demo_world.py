"""The demo world: the scene grammar of the trained stand-in model, how its scenes are drawn, what is true of them.

The demo model (edge/assets/models/demo-*) is a tiny Phi-3.5-vision stand-in trained on these scenes
only (tools/standin/, which takes its grammar and drawing from here, so that the test pattern, the
tests, the benchmark and the trainer draw the same shapes). Real deployments use Phi-3.5-vision.
It lives in capture beside testsrc.py, the demo's camera and the one runtime user of it, not in
imaging beside the gate.

A scene is a uniform grey background (level 64-192, mild noise) of any size from 320x240 to
1920x1080 (landscape or portrait) with 0-3 non-overlapping shapes, at most one per horizontal third
(left, center, right): circle / square / triangle x red / green / blue / yellow / white / black,
size (radius or half side) 8-20 % of the image height (capped so the shape fits its third), drawn
anti-aliased or not, JPEG quality 70-95, optionally with the demo camera's clock text overlay.
Frames are BGR (OpenCV order), as every camera hands them to the daemon.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SHAPES = ("circle", "square", "triangle")
COLORS = ("red", "green", "blue", "yellow", "white", "black")
POSITIONS = ("left", "center", "right")
# Nominal colors in BGR (OpenCV order), jittered a little when drawn.
COLOR_BGR = {
    "red": (0, 0, 255),
    "green": (0, 200, 0),
    "blue": (255, 0, 0),
    "yellow": (0, 255, 255),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
}
WHERE = {"left": "on the left", "center": "in the center", "right": "on the right"}
NUMBER = ("zero", "one", "two", "three")


@dataclass(frozen=True)
class Shape:
    shape: str
    color: str
    position: str


@dataclass(frozen=True)
class Scene:
    shapes: tuple[Shape, ...]  # left to right
    width: int = 640
    height: int = 480
    background: int = 128
    extras: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def at(self, position: str) -> Shape | None:
        return next((s for s in self.shapes if s.position == position), None)


def random_size(rng: np.random.Generator) -> tuple[int, int]:
    """(width, height): long side log-uniform 320..1920, aspect 4:3..16:9, landscape 3 times in 4."""
    long_side = int(round(np.exp(rng.uniform(np.log(320), np.log(1920)))))
    aspect = rng.uniform(4 / 3, 16 / 9)
    short_side = int(round(long_side / aspect))
    short_side = min(max(short_side, 240), 1080)
    long_side = max(long_side, 320)
    if rng.random() < 0.75:
        return long_side, short_side
    return short_side, long_side


def random_scene(
    rng: np.random.Generator, n_shapes: int | None = None, size: tuple[int, int] | None = None
) -> Scene:
    if n_shapes is None:
        n_shapes = int(rng.choice(4, p=[0.04, 0.24, 0.32, 0.40]))
    thirds = sorted(rng.choice(3, size=n_shapes, replace=False).tolist())
    shapes = tuple(Shape(SHAPES[rng.integers(3)], COLORS[rng.integers(6)], POSITIONS[t]) for t in thirds)
    w, h = size if size is not None else random_size(rng)
    return Scene(shapes, w, h, int(rng.integers(64, 193)))


def size_range(width: int, height: int) -> tuple[float, float]:
    """(smallest, largest) radius or half side: 8-20 % of the height, capped to fit a third."""
    r_max = min(0.20 * height, width / 3 / 2 - 2)
    return min(0.08 * height, r_max), r_max


def centre_range(
    width: int, height: int, position: str, r: float
) -> tuple[tuple[float, float], tuple[float, float]]:
    """((x0, x1), (y0, y1)): where the centre of a shape of size `r` may lie in its third."""
    third = width / 3
    t = POSITIONS.index(position)
    x0, x1 = t * third + r + 1, (t + 1) * third - r - 1
    return (x0, max(x0, x1)), (r + 1, height - r - 1)


def draw_shape(
    img: np.ndarray, shape: str, cx: float, cy: float, r: float, color: tuple[int, ...], line: int
) -> None:
    """One filled shape centred at (cx, cy) of radius / half side `r`, in BGR `color` (OpenCV `line` type)."""
    from edge.imaging.opencv import cv2  # here, not at import: testsrc takes the grammar without OpenCV

    if shape == "circle":
        cv2.circle(img, (int(round(cx)), int(round(cy))), int(round(r)), color, -1, line)
    elif shape == "square":
        pts = np.array([[cx - r, cy - r], [cx + r, cy - r], [cx + r, cy + r], [cx - r, cy + r]])
        cv2.fillPoly(img, [np.round(pts).astype(np.int32)], color, line)
    else:
        pts = np.array([[cx, cy - r], [cx + r, cy + r], [cx - r, cy + r]])
        cv2.fillPoly(img, [np.round(pts).astype(np.int32)], color, line)


def draw(
    scene: Scene, rng: np.random.Generator, *, overlay: bool | None = None, jpeg: bool = True
) -> np.ndarray:
    """The scene as an HxWx3 uint8 BGR frame (what the camera hands the daemon); random placement from `rng`."""
    from edge.imaging.opencv import cv2

    w, h = scene.width, scene.height
    img: np.ndarray = np.full((h, w, 3), scene.background, np.uint8)
    noise = rng.uniform(0, 4)
    if noise > 0.5:
        tile = np.clip(scene.background + rng.normal(0, noise, (61, 67, 1)), 0, 255).astype(np.uint8)
        img = np.ascontiguousarray(np.tile(tile, (h // 61 + 1, w // 67 + 1, 3))[:h, :w])
    line = cv2.LINE_AA if rng.random() < 0.5 else cv2.LINE_8
    r_min, r_max = size_range(w, h)
    for s in scene.shapes:
        r = rng.uniform(r_min, r_max)
        (x0, x1), (y0, y1) = centre_range(w, h, s.position, r)
        cx = rng.uniform(x0, x1)
        cy = rng.uniform(y0, y1)
        color = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in COLOR_BGR[s.color])
        draw_shape(img, s.shape, cx, cy, r, color, line)
    if overlay if overlay is not None else rng.random() < 0.4:
        t = rng.uniform(0, 7200)
        clock_text(img, clock_label(t, int(rng.integers(0, 99999))))
    if jpeg:
        q = int(rng.integers(70, 96))
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)  # type: ignore[assignment]
    return img


def clock_label(t: float, n: int) -> str:
    """The demo camera's clock text: stream time t (seconds) and frame number n."""
    hours, rem = divmod(t, 3600.0)
    minutes, seconds = divmod(rem, 60.0)
    return f"{int(hours):02d}:{int(minutes):02d}:{seconds:06.3f}  #{n}"


def clock_text(img: np.ndarray, label: str) -> None:
    """The demo camera's digital clock label, bottom left (black outline, white text), in place."""
    from edge.imaging.opencv import cv2

    h, w = img.shape[:2]
    s = min(w, h)
    scale = max(0.35, s / 600.0)
    thick = max(1, int(round(scale * 2)))
    org = (max(4, s // 40), h - max(6, s // 30))
    cv2.putText(img, label, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(img, label, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)


# ----------------------------------------------------------------------------- what is true of a scene

CAPTION_PROMPTS = (
    "Describe what you see in one sentence.",  # edge caption, the demo task, HA "describe now"
    "Describe the image.",
    "Describe this image in one sentence.",
    "Describe the scene.",
    "What do you see?",
    "What is in the image?",
    "What is on the screen?",
    "Caption this image.",
    "Describe the image in one sentence.",
    "What can you see in this picture?",
)
# Prompts for the structured task (the schema below is added by edge.inference.structured).
STRUCTURED_PROMPTS = (
    "List the shapes.",
    "List the shapes in the image.",
    "Describe the shapes in the image.",
    "What shapes are there?",
    "Describe what you see in one sentence.",
    "List every shape with its color and position.",
)
QUESTION_KINDS = ("color", "count", "exists", "where")
# The structured task's schema: {"shapes": [{"shape", "color", "position"}]} (enums constrain decoding).
SCHEMA = {
    "type": "object",
    "properties": {
        "shapes": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "shape": {"type": "string", "enum": list(SHAPES)},
                    "color": {"type": "string", "enum": list(COLORS)},
                    "position": {"type": "string", "enum": list(POSITIONS)},
                },
                "required": ["shape", "color", "position"],
            },
        }
    },
    "required": ["shapes"],
}


def caption(scene: Scene) -> str:
    """The one right caption: every shape with its color and third, left to right."""
    if not scene.shapes:
        return "An empty grey background."
    parts = [f"a {s.color} {s.shape} {WHERE[s.position]}" for s in scene.shapes]
    text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return text[0].upper() + text[1:] + "."


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def answer_color(scene: Scene, shape: str) -> str:
    found = [s.color for s in scene.shapes if s.shape == shape]
    return _join(found) if found else f"there is no {shape}"


def answer_count(scene: Scene) -> str:
    return NUMBER[len(scene.shapes)]


def answer_exists(scene: Scene, color: str, shape: str) -> str:
    return "yes" if any(s.color == color and s.shape == shape for s in scene.shapes) else "no"


def answer_where(scene: Scene, color: str, shape: str) -> str:
    found = [WHERE[s.position] for s in scene.shapes if s.color == color and s.shape == shape]
    return _join(found) if found else f"there is no {color} {shape}"


def as_json(scene: Scene) -> str:
    doc = {"shapes": [{"shape": s.shape, "color": s.color, "position": s.position} for s in scene.shapes]}
    return json.dumps(doc, separators=(",", ":"))


def question_prompts(shape: str, color: str) -> dict[str, tuple[str, ...]]:
    return {
        "color": (f"What color is the {shape}?", f"What colour is the {shape}?"),
        "count": (
            "How many shapes are there?",
            "How many shapes are in the image?",
            "How many shapes do you see?",
        ),
        "exists": (f"Is there a {color} {shape}?", f"Is there a {color} {shape} in the image?"),
        "where": (f"Where is the {color} {shape}?",),
    }


def question(scene: Scene, kind: str, rng: np.random.Generator) -> tuple[str, str]:
    """(prompt, right answer) of a `kind` question (QUESTION_KINDS) about `scene`: about a shape that is
    there 60 % of the time (its color changed in 3 of 10 of those), else about any shape and color."""
    if scene.shapes and rng.random() < 0.6:
        s = scene.shapes[rng.integers(len(scene.shapes))]
        shape, color = s.shape, s.color
        if rng.random() < 0.3:
            color = COLORS[rng.integers(6)]
    else:
        shape, color = SHAPES[rng.integers(3)], COLORS[rng.integers(6)]
    options = question_prompts(shape, color)[kind]
    prompt = options[rng.integers(len(options))]
    answer = {
        "color": lambda: answer_color(scene, shape),
        "count": lambda: answer_count(scene),
        "exists": lambda: answer_exists(scene, color, shape),
        "where": lambda: answer_where(scene, color, shape),
    }[kind]()
    return prompt, answer


# ----------------------------------------------------------------------------- two frames: what changed

# Prompts for two images (before, after), e.g. an event task of two frames on the demo model.
CHANGE_PROMPTS = (
    "What changed?",
    "What changed between the two images?",
    "What is different in the second image?",
)
NOTHING_CHANGED = "Nothing changed."


def random_change(scene: Scene, rng: np.random.Generator) -> Scene:
    """`scene` after 0-2 random edits (a shape appears, disappears, moves to an empty third, or is
    replaced by another shape or color); same frame size and background."""
    by_third: dict[str, Shape] = {s.position: s for s in scene.shapes}
    edits = int(rng.choice(3, p=[0.12, 0.58, 0.30]))
    for _ in range(edits):
        empty = [p for p in POSITIONS if p not in by_third]
        kinds = [
            k for k, ok in (("appear", empty), ("disappear", by_third), ("move", by_third and empty)) if ok
        ]
        kinds += ["replace"] if by_third else []
        kind = kinds[rng.integers(len(kinds))]
        if kind == "appear":
            p = empty[rng.integers(len(empty))]
            by_third[p] = Shape(SHAPES[rng.integers(3)], COLORS[rng.integers(6)], p)
        elif kind == "disappear":
            del by_third[sorted(by_third)[rng.integers(len(by_third))]]
        elif kind == "move":
            old = by_third.pop(sorted(by_third)[rng.integers(len(by_third))])
            p = empty[rng.integers(len(empty))]
            by_third[p] = Shape(old.shape, old.color, p)
        else:
            p = sorted(by_third)[rng.integers(len(by_third))]
            old = by_third[p]
            while (new := Shape(SHAPES[rng.integers(3)], COLORS[rng.integers(6)], p)) == old:
                pass
            by_third[p] = new
    shapes = tuple(by_third[p] for p in POSITIONS if p in by_third)
    return Scene(shapes, scene.width, scene.height, scene.background)


def answer_changed(before: Scene, after: Scene) -> str:
    """The one right answer to "What changed?" for two frames: every shape that moved, disappeared or
    appeared, ordered by the third it was in (a move by where it came from), e.g. "The red circle
    moved from the left to the right and a blue square appeared in the center."."""
    gone = [s for s in before.shapes if s not in after.shapes]
    new = [s for s in after.shapes if s not in before.shapes]
    events: list[tuple[int, int, str]] = []
    for s in list(gone):  # a shape of the same kind and color that left one third and arrived in another
        match = next((n for n in new if (n.shape, n.color) == (s.shape, s.color)), None)
        if match is not None:
            gone.remove(s)
            new.remove(match)
            events.append(
                (
                    POSITIONS.index(s.position),
                    0,
                    f"the {s.color} {s.shape} moved from the {s.position} to the {match.position}",
                )
            )
    events += [
        (POSITIONS.index(s.position), 1, f"the {s.color} {s.shape} {WHERE[s.position]} disappeared")
        for s in gone
    ]
    events += [
        (POSITIONS.index(s.position), 2, f"a {s.color} {s.shape} appeared {WHERE[s.position]}") for s in new
    ]
    if not events:
        return NOTHING_CHANGED
    text = _join([e[2] for e in sorted(events)])
    return text[0].upper() + text[1:] + "."
