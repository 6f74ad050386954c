"""Alerts: a yes/no over a structured task's answers, with hysteresis, as a state that changes.

Each answer of the alert's task is evaluated (`edge.config.conditions`). The state turns on once the
condition has held for `for_s` (answers that keep saying yes since the first one), and off once it
has stopped holding for `clear_after_s`; with both 0 it follows every answer. A single answer that
flickers inside those windows changes nothing. An answer the condition cannot be evaluated on (a
schema error, a missing field given to a function) is counted per alert and leaves the state as it
was. Pure logic: the daemon publishes the changes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from edge.config.conditions import ConditionError, compile_condition, evaluate
from edge.config.settings import AlertSettings
from edge.core.messages import ResultPayload

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlertChange:
    name: str
    on: bool
    at: float  # wall clock of the answer that changed it
    result_id: str
    camera: str
    task: str
    value: Any  # what the condition gave on that answer


@dataclass
class _State:
    on: bool = False
    holds_since: float | None = None  # first answer of the current run of yes
    fails_since: float | None = None  # first answer of the current run of no


class Alerts:
    def __init__(self, alerts: Iterable[AlertSettings]) -> None:
        self._alerts = [(a, compile_condition(a.when)) for a in alerts]
        self._state = {a.name: _State() for a, _ in self._alerts}
        self.errors: dict[str, int] = {a.name: 0 for a, _ in self._alerts}
        self.evaluated: dict[str, int] = {a.name: 0 for a, _ in self._alerts}

    def state(self, name: str) -> bool:
        return self._state[name].on

    def on_result(self, result: ResultPayload, now: float) -> list[AlertChange]:
        changes = []
        for alert, condition in self._alerts:
            if alert.task != result.task:
                continue
            if result.data is None:
                self._error(
                    alert.name, f"answer {result.id} has no JSON ({result.schema_error or 'no data'})"
                )
                continue
            try:
                holds, value = evaluate(condition, result.data)
            except ConditionError as err:
                self._error(alert.name, f"answer {result.id}: {err}")
                continue
            self.evaluated[alert.name] += 1
            st = self._state[alert.name]
            if holds:
                st.fails_since = None
                st.holds_since = now if st.holds_since is None else st.holds_since
                turn = not st.on and now - st.holds_since >= alert.for_s
            else:
                st.holds_since = None
                st.fails_since = now if st.fails_since is None else st.fails_since
                turn = st.on and now - st.fails_since >= alert.clear_after_s
            if turn:
                st.on = not st.on
                changes.append(
                    AlertChange(alert.name, st.on, now, result.id, result.camera, result.task, value)
                )
        return changes

    def _error(self, name: str, why: str) -> None:
        self.errors[name] += 1
        n = self.errors[name]
        if n == 1 or n % 100 == 0:
            log.warning("alert %s: condition not evaluated (%d so far): %s", name, n, why)
