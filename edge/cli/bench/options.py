"""What one `edge bench` run is given: its options, its progress line, the prompt it asks, and the
rounding its report uses; shared by the phases (command.py and overhead_phases.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edge.config.settings import Settings, TaskSettings

Progress = Callable[[str], None]

MIN_PAIRS = 6  # the fewest pairs whose signed-rank interval is bounded


@dataclass(frozen=True)
class BenchOptions:
    jobs: int = 20  # latency phase
    overhead_runs: int = 10  # daemon/bare pairs at least (fewer only without a bare loop)
    overhead_max_pairs: int = 40  # ... and then more, until the 95 % intervals are narrow enough
    overhead_half_width: float = 0.5  # points: the precision asked of the A/B and A/A intervals
    overhead_budget_s: float = 240.0  # wall-clock cap of the extra pairs
    # Rounds per set of processes (0: one set for the whole phase). With N > 0 the daemon and both bare
    # loops are restarted every N rounds and the intervals are taken over the sets, not the rounds:
    # two processes of the same program can differ by a few percent per token, and only fresh
    # processes sample that.
    overhead_rotate: int = 0
    idle_s: float = 10.0
    force_local_broker: bool = False
    rss_sample_s: float | None = None  # benchmarks/pipeline.py: sample RSS during the job phase
    # The in-process probe (one process, one model object: the daemon's job path vs the bare loop):
    # rounds at least / at most, and its wall-clock cap; it stops once both intervals are narrow.
    inproc_min_rounds: int = 2 * MIN_PAIRS
    inproc_max_rounds: int = 200
    inproc_budget_s: float = 150.0
    # Answer length of the in-process rounds (the configured max_new_tokens if longer): the noise is
    # per run, so more decode per prefill narrows the interval faster (per-round sd 7.6 % at 32
    # tokens, 4.7 % at 96 on the loaded VM: ~1.7x less variance per second of rounds).
    inproc_tokens: int = 128


def bench_prompt(settings: Settings) -> str:
    """What the bench asks: the first caption task's prompt, or the default caption prompt."""
    task = next((t for t in settings.tasks if t.kind == "caption"), None)
    return task.prompt if task is not None else TaskSettings(name="caption").prompt


def round_or_none(value: float | None, nd: int) -> float | None:
    return None if value is None else round(value, nd)
