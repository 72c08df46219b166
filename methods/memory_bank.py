"""ACTUNE's momentum memory bank (Eq. 10-13): an exponential moving average over rounds.

Fine-tuned models disagree from one round to the next (Dodge et al. 2020); a point the model
was confident about only in the latest round is a poor pseudo-label candidate. The bank keeps,
per pool id, g_t = m_t * x_t + (1 - m_t) * g_{t-1} where x_t is the round's class probabilities
(probability-based, Eq. 10) or uncertainty values (value-based, Eq. 12), and

    m_t = (1 - t/T) m_L + (t/T) m_H                                     (Eq. 10)

rises from m_L to m_H because later models are trained on more labels. Here t is the round of
the model whose output is folded in (0 = the model trained on the initial labels); a point seen
for the first time is initialised with its current value (Algorithm 1, step 2).

Ids are stable pool indices across rounds, so the bank is a tensor over the pool, saved in the
method's ``state_dict``. Updating twice for the same round replaces the first update (the
pre-update bank is kept), so a repeated selection for a round does not fold a model in twice.
The bank is float32, like the probabilities it averages, on the device of the first values
folded in: an average of ten values in [0, 1] gains nothing from float64.
"""
from __future__ import annotations

import numpy as np
import torch


def momentum(t: int, rounds: int, m_low: float, m_high: float) -> float:
    """m_t of Eq. 10: m_L at t = 0, m_H at t = T, linear in between."""
    if not 0 < m_low <= m_high <= 1:
        raise ValueError(f"need 0 < m_L <= m_H <= 1, got m_L={m_low}, m_H={m_high}")
    frac = t / rounds
    return (1 - frac) * m_low + frac * m_high


class MemoryBank:
    """Per-pool-id moving average of (n, C) probabilities or (n,) values."""

    def __init__(self):
        self.values: torch.Tensor | None = None   # (n_pool, ...) float32
        self.seen: torch.Tensor | None = None     # (n_pool,) bool: has a value
        self.round: int | None = None             # model round last folded in
        self._before: tuple | None = None         # (values, seen, round) before that update

    def update(self, ids: np.ndarray, current: torch.Tensor, m: float, round: int,
               n_pool: int) -> torch.Tensor:
        """Fold the values ``current`` of pool ids ``ids`` from the model of ``round`` in."""
        if self.round is not None and round == self.round:   # redo this round's update
            self.values, self.seen, self.round = self._before
        if self.round is not None and round < self.round:
            raise ValueError(f"memory bank already holds round {self.round}; got round {round}")
        current = torch.as_tensor(current)
        if self.values is None:
            self.values = torch.zeros((n_pool, *current.shape[1:]), dtype=torch.float32,
                                      device=current.device)
            self.seen = torch.zeros(n_pool, dtype=torch.bool, device=current.device)
        current = current.to(self.values.device, self.values.dtype)
        ids = torch.as_tensor(np.asarray(ids), dtype=torch.long, device=self.values.device)
        # copy on write: tensors handed out by ``state_dict`` or ``update`` never change later
        self._before = (self.values, self.seen, self.round)
        self.values, self.seen = self.values.clone(), self.seen.clone()
        old, seen = self.values[ids], self.seen[ids]
        mixed = m * current + (1 - m) * old
        shape = (-1,) + (1,) * (current.dim() - 1)
        self.values[ids] = torch.where(seen.reshape(shape), mixed, current)
        self.seen[ids] = True
        self.round = round
        return self.values

    def get(self, ids: np.ndarray) -> torch.Tensor:
        ids = torch.as_tensor(np.asarray(ids), dtype=torch.long,
                              device=None if self.values is None else self.values.device)
        if self.values is None or not self.seen[ids].all():
            raise KeyError("memory bank has no value for some requested ids")
        return self.values[ids]

    def state_dict(self) -> dict:
        return {"values": self.values, "seen": self.seen, "round": self.round,
                "before": self._before}

    def load_state_dict(self, state: dict) -> None:
        self.values, self.seen = state.get("values"), state.get("seen")
        self.round, self._before = state.get("round"), state.get("before")
