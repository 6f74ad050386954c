"""Alert conditions in JMESPath: a standard query language over JSON with a safe, pure-Python
implementation (no `eval`). Compiled once when the settings load, so a condition that does not
parse is a config error naming the alert; evaluated against each answer of the alert's task.

JMESPath's truth is JSON's: false, null, an empty list, object or string are false; anything else
(a number, `true`, a non-empty list) is true. Literals are written in backticks: `length(x) > \\`0\\``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jmespath.parser import ParsedResult


class ConditionError(ValueError):
    """The condition does not parse, or cannot be evaluated against an answer."""


def compile_condition(text: str) -> ParsedResult:
    import jmespath  # with the first alert: a daemon without alerts does not load it
    from jmespath.exceptions import JMESPathError

    try:
        return jmespath.compile(text)
    except JMESPathError as err:
        raise ConditionError(f"{text!r} is not a JMESPath expression: {str(err).splitlines()[0]}") from None


def evaluate(condition: ParsedResult, data: Any) -> tuple[bool, Any]:
    """(truth, the value the expression gave). ConditionError when it fails on this answer (a
    function given the wrong type, e.g. `length(null)`): counted by the caller, never raised on."""
    from jmespath.exceptions import JMESPathError

    try:
        value = condition.search(data)
    except JMESPathError as err:
        raise ConditionError(str(err).splitlines()[0]) from None
    truth = not (value is None or value is False or value == [] or value == {} or value == "")
    return truth, value
