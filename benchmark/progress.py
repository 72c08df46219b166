"""Whole-run progress: one bar on a terminal, one summary line per round everywhere.

The work of a run is known ahead, near enough: round t trains ``training_steps`` steps on the
labels it will have (the initial set plus ``budget`` per round), each step on a labelled batch
and, with pseudo-labels, an unlabelled one. Progress and the time left are measured in texts
through training (steps x batch sizes), so a round of 180 self-training steps on 8 + 32 texts
counts for what it costs; the plan is redone after each round with what that round showed
(whether pseudo-labels came). On a terminal the bar reads ``round 3/10 | steps 420/1,980 |
1:23 elapsed, ~4:10 left |#####     | 34%``; a log (SLURM, a pipe) gets the per-round lines.
"""
from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm

from .training import training_steps


def clock(seconds: float) -> str:
    """``75 -> 1:15``, ``3725 -> 1:02:05``."""
    s = int(round(seconds))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


class RunProgress:
    """Counts training steps of the rounds ``first..T`` of one run and estimates the time left.

    ``n_labelled`` is the training-label count of round ``first``; ``pseudo`` whether rounds
    after round 0 are expected to train on pseudo-labels (the setting allows them)."""

    def __init__(self, cfg: dict, first: int, n_labelled: int, pseudo: bool, stream=None):
        self.cfg, self.first, self.rounds = cfg, first, int(cfg["rounds"])
        self.stream = stream if stream is not None else sys.stderr
        self.plan: dict[int, tuple[int, int]] = {}   # round -> (steps, texts per step)
        self._replan(first, n_labelled, pseudo)
        self.round, self.steps_done, self.texts_done = first, 0, 0
        self.start = time.perf_counter()
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = tqdm(total=self.total_texts, file=self.stream, disable=not tty, leave=False,
                        bar_format="{desc} |{bar}| {percentage:3.0f}%",
                        dynamic_ncols=True, mininterval=0.5)
        self._describe()

    # the plan ------------------------------------------------------------------------------
    def _texts_per_step(self, pseudo: bool) -> int:
        return int(self.cfg["batch_size"]) + (int(self.cfg["batch_size_unlabelled"] or 0)
                                              if pseudo else 0)

    def _replan(self, t: int, n_labelled: int, pseudo: bool) -> None:
        """Plan rounds ``t..T`` from round t's label count (+ ``budget`` a round after it)."""
        cap = self.cfg.get("pool_size") or float("inf")
        for r in range(t, self.rounds + 1):
            n = int(min(n_labelled + (r - t) * int(self.cfg["budget"]), cap))
            with_pseudo = pseudo and r > 0
            self.plan[r] = (training_steps(self.cfg, n, int(with_pseudo)),
                            self._texts_per_step(with_pseudo))

    @property
    def total_steps(self) -> int:
        return sum(s for s, _ in self.plan.values())

    @property
    def total_texts(self) -> int:
        return sum(s * k for s, k in self.plan.values())

    # events --------------------------------------------------------------------------------
    def start_round(self, t: int, steps: int, pseudo: bool) -> None:
        """Round t is about to train ``steps`` steps (now known exactly)."""
        self.round = t
        self.plan[t] = (steps, self._texts_per_step(pseudo))
        self.bar.total = self.total_texts
        self._describe()

    def update(self, n: int = 1) -> None:
        """``n`` training steps of the current round done (``fine_tune`` calls this)."""
        k = self.plan[self.round][1]
        self.steps_done += n
        self.texts_done += n * k
        self.bar.update(n * k)
        self._describe(refresh=False)

    def end_round(self, t: int, n_labelled_next: int, pseudo_next: bool) -> None:
        """Round t is done; the next one trains on ``n_labelled_next`` labels."""
        if t < self.rounds:
            self._replan(t + 1, n_labelled_next, pseudo_next)
            self.bar.total = self.total_texts
        self.bar.refresh()

    # text ----------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def remaining(self) -> float | None:
        """Seconds left: time so far per text trained, times the texts still to train."""
        if self.texts_done == 0:
            return None
        left = max(self.total_texts - self.texts_done, 0)
        return self.elapsed() / self.texts_done * left

    def times(self) -> str:
        left = self.remaining()
        return f"{clock(self.elapsed())} elapsed, " + (
            f"~{clock(left)} left" if left is not None else "time left unknown yet")

    def _describe(self, refresh: bool = True) -> None:
        if self.bar.disable:
            return
        self.bar.set_description_str(f"round {self.round}/{self.rounds} | steps "
                                     f"{self.steps_done:,}/{self.total_steps:,} | "
                                     + self.times(), refresh=refresh)

    def write(self, line: str, log=print) -> None:
        """Print a line above the bar (or plainly, without one)."""
        if self.bar.disable:
            log(line)
        else:
            with tqdm.external_write_mode(file=self.stream):
                log(line)

    def close(self) -> None:
        self.bar.close()
