"""The stand-in model's world: the scene grammar, how scenes are drawn, and what the model says.

A scene is a uniform grey background (level 64-192, mild noise) of any size from 320x240 to
1920x1080 (landscape or portrait) with 0-3 non-overlapping shapes, at most one per horizontal third
(left, center, right): circle / square / triangle x red / green / blue / yellow / white / black,
size (radius or half side) 8-20 % of the image height (capped so the shape fits its third), drawn
anti-aliased or not, JPEG quality 70-95, optionally with the demo camera's clock text overlay.
"""

from __future__ import annotations

import json

import numpy as np

# The grammar, the drawing and the answers live in edge (the demo's test pattern, the tests and the
# benchmark draw the same scenes); edge never imports tools, so this module takes them from there.
from edge.capture.demo_world import (  # noqa: F401 (re-exported: the trainer and exporters use W.*)
    CAPTION_PROMPTS,
    CHANGE_PROMPTS,
    COLOR_BGR,
    COLORS,
    NUMBER,
    POSITIONS,
    SCHEMA,
    SHAPES,
    STRUCTURED_PROMPTS,
    WHERE,
    Scene,
    Shape,
    answer_changed,
    answer_color,
    answer_count,
    answer_exists,
    answer_where,
    as_json,
    caption,
    draw,
    question_prompts,
    random_change,
    random_scene,
    random_size,
)

JSON_PROMPTS = STRUCTURED_PROMPTS  # one list: the demo's structured prompts are the trained ones
# The same schema without enums (what a user might send): the trainer asks with both.
SCHEMA_PLAIN = json.loads(json.dumps(SCHEMA))
for _field in SCHEMA_PLAIN["properties"]["shapes"]["items"]["properties"].values():
    del _field["enum"]


def schema_prompt(prompt: str, schema: dict) -> str:
    """What edge.inference.structured.schema_prompt sends (kept in sync; checked by evaluate)."""
    text = json.dumps(schema, separators=(",", ":"), sort_keys=False)
    return f"{prompt}\nAnswer with only a JSON value that matches this JSON schema:\n{text}"


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
    for _ in range(300):
        before = random_scene(rng, size=(640, 480))
        out.append(answer_changed(before, random_change(before, rng)))
    out += list(CHANGE_PROMPTS) * 10
    out += ["yes", "no", "zero one two three"] * 10
    return out
