"""The in-process probe's token-level interleaving (edge/inference/overhead_probe.py): a partner's
step is run inside each own step and taken off it, position by position. Fake generators, no SDK."""

from __future__ import annotations

import time
from typing import Any

import pytest

from edge.inference.overhead_probe import _Partnered, _PartneredSdk, split_steps


def test_each_own_step_loses_the_partner_step_it_held() -> None:
    # own steps k hold the partner's call k+1; the partner's call 0 (its first token) is no step
    own, partner = split_steps([10.0, 11.0, 12.0], [0.0050, 0.004, 0.005, 0.006])
    assert own == pytest.approx([6.0, 6.0, 6.0])
    assert partner == pytest.approx([4.0, 5.0, 6.0])


def test_a_partner_that_finished_first_leaves_the_own_steps_whole() -> None:
    own, partner = split_steps([10.0, 10.0], [0.001, 0.002, 0.0])
    assert own == pytest.approx([8.0, 10.0]) and partner == pytest.approx([2.0])


class FakeGen:
    def __init__(self, n: int, step_s: float, log: list[str], name: str) -> None:
        self.left, self.step_s, self.log, self.name = n, step_s, log, name

    def is_done(self) -> bool:
        return self.left == 0

    def generate_next_token(self) -> None:
        self.log.append(self.name)
        time.sleep(self.step_s)
        self.left -= 1


def test_the_stand_in_sdk_runs_one_partner_step_before_each_own_step() -> None:
    log: list[str] = []

    class Sdk:
        def Generator(self, model: Any, params: Any) -> FakeGen:  # noqa: N802
            return FakeGen(3, 0.0, log, "own")

        GeneratorParams = object

    sdk = _PartneredSdk(Sdk(), lambda: FakeGen(2, 0.002, log, "partner"))
    gen = sdk.Generator(None, None)
    assert isinstance(gen, _Partnered) and sdk.GeneratorParams is object  # the rest passes through
    while not gen.is_done():
        gen.generate_next_token()
    assert log == ["partner", "own", "partner", "own", "own"]
    assert len(gen.inner) == 3 and gen.inner[2] == 0.0 and gen.inner[0] > 0
