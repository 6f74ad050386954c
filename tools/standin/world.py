"""The stand-in model's world: the scene grammar, how scenes are drawn, and what the model says.

A scene is a uniform grey background (level 64-192, mild noise) of any size from 320x240 to
1920x1080 (landscape or portrait) with 0-3 non-overlapping shapes, at most one per horizontal third
(left, center, right): circle / square / triangle x red / green / blue / yellow / white / black,
size (radius or half side) 8-20 % of the image height (capped so the shape fits its third), drawn
anti-aliased or not, JPEG quality 70-95, optionally with the demo camera's clock text overlay.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import cv2
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
    extras: dict = field(default_factory=dict, compare=False, hash=False)

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


def draw(
    scene: Scene, rng: np.random.Generator, *, overlay: bool | None = None, jpeg: bool = True
) -> np.ndarray:
    """The scene as an HxWx3 uint8 BGR frame (what the camera hands the daemon)."""
    w, h = scene.width, scene.height
    img = np.full((h, w, 3), scene.background, np.uint8)
    noise = rng.uniform(0, 4)
    if noise > 0.5:
        tile = np.clip(scene.background + rng.normal(0, noise, (61, 67, 1)), 0, 255).astype(np.uint8)
        img = np.ascontiguousarray(np.tile(tile, (h // 61 + 1, w // 67 + 1, 3))[:h, :w])
    third = w / 3
    line = cv2.LINE_AA if rng.random() < 0.5 else cv2.LINE_8
    for s in scene.shapes:
        t = POSITIONS.index(s.position)
        r_max = min(0.20 * h, third / 2 - 2)
        r_min = min(0.08 * h, r_max)
        r = rng.uniform(r_min, r_max)
        x0, x1 = t * third + r + 1, (t + 1) * third - r - 1
        cx = rng.uniform(x0, max(x0, x1))
        cy = rng.uniform(r + 1, h - r - 1)
        color = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in COLOR_BGR[s.color])
        if s.shape == "circle":
            cv2.circle(img, (int(round(cx)), int(round(cy))), int(round(r)), color, -1, line)
        elif s.shape == "square":
            pts = np.array([[cx - r, cy - r], [cx + r, cy - r], [cx + r, cy + r], [cx - r, cy + r]])
            cv2.fillPoly(img, [np.round(pts).astype(np.int32)], color, line)
        else:
            pts = np.array([[cx, cy - r], [cx + r, cy + r], [cx - r, cy + r]])
            cv2.fillPoly(img, [np.round(pts).astype(np.int32)], color, line)
    if overlay if overlay is not None else rng.random() < 0.4:
        _clock_text(img, rng)
    if jpeg:
        q = int(rng.integers(70, 96))
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return img


def _clock_text(img: np.ndarray, rng: np.random.Generator) -> None:
    """The demo camera's digital clock label, bottom left (black outline, white text)."""
    h, w = img.shape[:2]
    s = min(w, h)
    t = rng.uniform(0, 7200)
    label = f"{int(t // 3600):02d}:{int(t % 3600 // 60):02d}:{t % 60:06.3f}  #{int(rng.integers(0, 99999))}"
    scale = max(0.35, s / 600.0)
    thick = max(1, int(round(scale * 2)))
    org = (max(4, s // 40), h - max(6, s // 30))
    cv2.putText(img, label, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(img, label, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)


# ----------------------------------------------------------------------------- what it says

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
JSON_PROMPTS = (
    "List the shapes.",
    "List the shapes in the image.",
    "Describe the shapes in the image.",
    "What shapes are there?",
    "Describe what you see in one sentence.",
    "List every shape with its color and position.",
)
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
SCHEMA_PLAIN = {
    "type": "object",
    "properties": {
        "shapes": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "shape": {"type": "string"},
                    "color": {"type": "string"},
                    "position": {"type": "string"},
                },
                "required": ["shape", "color", "position"],
            },
        }
    },
    "required": ["shapes"],
}


def schema_prompt(prompt: str, schema: dict) -> str:
    """What edge.inference.structured.schema_prompt sends (kept in sync; checked by evaluate)."""
    text = json.dumps(schema, separators=(",", ":"), sort_keys=False)
    return f"{prompt}\nAnswer with only a JSON value that matches this JSON schema:\n{text}"


def caption(scene: Scene) -> str:
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


def sample_task(
    scene: Scene, rng: np.random.Generator, weights=(0.35, 0.4, 0.25), question_weights=None
) -> tuple[str, str, str]:
    """(kind, prompt, answer) for one scene: a caption, a question or a structured request."""
    kind = ("caption", "question", "json")[int(rng.choice(3, p=np.array(weights) / sum(weights)))]
    if kind == "caption":
        return kind, CAPTION_PROMPTS[rng.integers(len(CAPTION_PROMPTS))], caption(scene)
    if kind == "json":
        base = JSON_PROMPTS[rng.integers(len(JSON_PROMPTS))]
        r = rng.random()
        if r < 0.6:
            prompt = schema_prompt(base, SCHEMA)
        elif r < 0.9:
            prompt = schema_prompt(base, SCHEMA_PLAIN)
        else:
            prompt = base.rstrip(".?") + " as JSON."
        return kind, prompt, as_json(scene)
    # questions: ask about present things half the time
    if scene.shapes and rng.random() < 0.6:
        s = scene.shapes[rng.integers(len(scene.shapes))]
        shape, color = s.shape, s.color
        if rng.random() < 0.3:
            color = COLORS[rng.integers(6)]
    else:
        shape, color = SHAPES[rng.integers(3)], COLORS[rng.integers(6)]
    if question_weights is None:
        sub = ("color", "count", "exists", "where")[rng.integers(4)]
    else:
        qw = np.array(question_weights, dtype=float)
        sub = ("color", "count", "exists", "where")[int(rng.choice(4, p=qw / qw.sum()))]
    options = question_prompts(shape, color)[sub]
    prompt = options[rng.integers(len(options))]
    answer = {
        "color": lambda: answer_color(scene, shape),
        "count": lambda: answer_count(scene),
        "exists": lambda: answer_exists(scene, color, shape),
        "where": lambda: answer_where(scene, color, shape),
    }[sub]()
    return f"question:{sub}", prompt, answer


def corpus() -> list[str]:
    """Text the tokenizer is trained on, so every word the model reads or says is one or two tokens."""
    rng = np.random.default_rng(1)
    out = list(CAPTION_PROMPTS) + list(JSON_PROMPTS)
    out += [schema_prompt("List the shapes.", SCHEMA), schema_prompt("List the shapes.", SCHEMA_PLAIN)] * 5
    for _ in range(400):
        scene = random_scene(rng, size=(640, 480))
        out.append(caption(scene))
        out.append(as_json(scene))
        for shape in SHAPES:
            for color in COLORS:
                if rng.random() < 0.1:
                    for opts in question_prompts(shape, color).values():
                        out.extend(opts)
                    out.append(answer_where(scene, color, shape))
                    out.append(answer_color(scene, shape))
    out += ["What changed?", "yes", "no", "zero one two three"] * 10
    return out
