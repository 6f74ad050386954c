"""JSON extraction from model text and the JSON-schema subset validator."""

from __future__ import annotations

import json

import pytest

from edge.inference.structured import extract_json, parse, schema_prompt, schema_text, validate

SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["person", "car", "none"]},
        "count": {"type": "integer", "minimum": 0},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    },
    "required": ["label", "count"],
    "additionalProperties": False,
}


def test_extracts_object_surrounded_by_prose() -> None:
    text = 'Sure! Here it is: {"label": "car", "count": 2} Hope that helps.'
    assert extract_json(text) == {"label": "car", "count": 2}


def test_prefers_a_fenced_block() -> None:
    text = 'Example {"x": 1}\n```json\n{"label": "person", "count": 1}\n```'
    assert extract_json(text) == {"label": "person", "count": 1}


def test_skips_a_broken_candidate_and_finds_the_next() -> None:
    assert extract_json('{not json} then [1, 2, {"a": null}]') == [1, 2, {"a": None}]


def test_truncated_json_says_cut_off() -> None:
    with pytest.raises(ValueError, match="no complete JSON"):
        extract_json('{"label": "car", "count": ')


def test_no_json_at_all() -> None:
    with pytest.raises(ValueError, match="no JSON"):
        extract_json("just words")


def test_valid_document_has_no_errors() -> None:
    assert validate({"label": "none", "count": 0, "confidence": 0.5, "tags": ["a"]}, SCHEMA) == []


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({"count": 1}, "missing required property 'label'"),
        ({"label": "dog", "count": 1}, "is not one of"),
        ({"label": "car", "count": -1}, "below minimum"),
        ({"label": "car", "count": 1.5}, "expected integer"),
        ({"label": "car", "count": True}, "expected integer"),
        ({"label": "car", "count": 1, "extra": 1}, "unexpected property 'extra'"),
        ({"label": "car", "count": 1, "tags": ["a", 2]}, "tags[1]: expected string"),
        ({"label": "car", "count": 1, "tags": ["a", "b", "c", "d"]}, "more than 3 items"),
        ({"label": "car", "count": 1, "confidence": 2}, "above maximum"),
        (["not", "an", "object"], "expected object"),
    ],
)
def test_invalid_documents_name_the_problem(doc: object, fragment: str) -> None:
    errors = validate(doc, SCHEMA)
    assert errors, doc
    assert any(fragment in e for e in errors), errors


def test_type_lists_anyof_oneof_and_patterns() -> None:
    assert validate(None, {"type": ["string", "null"]}) == []
    assert validate(3, {"type": ["string", "null"]})
    assert validate("ab", {"anyOf": [{"type": "integer"}, {"type": "string", "pattern": "^a"}]}) == []
    assert validate("b", {"anyOf": [{"type": "integer"}, {"type": "string", "pattern": "^a"}]})
    assert validate(1, {"oneOf": [{"type": "integer"}, {"type": "number"}]})  # matches both
    assert validate("x", {"type": "string", "minLength": 2})
    assert validate({"a": 5}, {"type": "object", "additionalProperties": {"type": "string"}})
    assert validate(2.0, {"type": "integer"}) == []  # JSON has no separate integer type


def test_parse_returns_data_or_one_line_error() -> None:
    data, err = parse('{"label": "car", "count": 3}', SCHEMA)
    assert (data, err) == ({"label": "car", "count": 3}, None)
    data, err = parse('{"label": "cat"}', SCHEMA)
    assert data is None and err and "\n" not in err
    data, err = parse("", SCHEMA)
    assert data is None and err


def test_many_errors_are_summarised() -> None:
    schema = {"type": "object", "required": ["a", "b", "c", "d", "e"]}
    _, err = parse("{}", schema)
    assert err is not None and "(+2 more)" in err


def test_schema_text_and_prompt_round_trip() -> None:
    assert json.loads(schema_text(SCHEMA)) == SCHEMA
    p = schema_prompt("Count the cars.", SCHEMA)
    assert p.startswith("Count the cars.") and schema_text(SCHEMA) in p
