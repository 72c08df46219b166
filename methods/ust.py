"""UST (Mukherjee & Awadallah 2020): uncertainty-aware self-training.

Random labels as ST; the pseudo-labels come from T MC-dropout passes of the previous round's
model (the teacher; the loop's fresh model each round is the student):

* label: the deterministic (dropout-off) argmax;
* "easy" sampling: for each predicted class c, draw ``samples // C`` points without replacement
  with probability proportional to 1 - BALD (floored at ``1e-6``: BALD can exceed 1 nat with
  more than e classes), so confident-and-consistent points are favoured and every class is
  represented;
* weight: the inverse predictive variance of the pseudo-label's probability over the passes,
  1 / (Var_t p_t[y] + ``var_floor``), rescaled to mean 1 so lambda keeps its meaning. The floor
  bounds the ratio of two weights by (0.25 + floor) / floor.

The official code samples from 16,384 points with 30 passes; ``passes`` (>= 10) and ``samples``
are parameters. With a pool smaller than ``samples`` every point of a class is taken, and only the
weights still use the uncertainty.
"""
from __future__ import annotations

import numpy as np
import torch

from .base import Method, RoundView, Selection, bald
from .random import random_query
from .registry import register
from .st import pseudo_candidates


def easy_sample(labels: np.ndarray, bald_scores: np.ndarray, per_class: int,
                rng: np.random.Generator) -> np.ndarray:
    """Positions drawn per class with probability proportional to 1 - BALD, without replacement."""
    out = []
    for c in np.unique(labels):
        pos = np.flatnonzero(labels == c)
        p = np.maximum(1.0 - bald_scores[pos], 1e-6)
        k = min(per_class, len(pos))
        out.append(rng.choice(pos, size=k, replace=False, p=p / p.sum()))
    return np.sort(np.concatenate(out)) if out else np.zeros(0, dtype=np.int64)


@register("ust")
class UST(Method):
    family = "ST"
    queries_like = "random"
    params = {"passes": 10, "samples": 4096, "var_floor": 1e-3}
    settings = ("ssal", "weak")
    cost = "T=10 dropout passes, ~16x one inference pass"

    def select(self, view: RoundView) -> Selection:
        if int(self.hp["passes"]) < 2:
            raise ValueError("UST needs at least 2 dropout passes for a variance (paper: >= 10)")
        query = random_query(view)
        with view.timer("mc_dropout"):
            mc = view.mc_dropout(int(self.hp["passes"]))     # (T, n_pool, C), cached per round
        with view.timer("pseudo_labels"):
            cand = pseudo_candidates(view, query)
            idx = torch.as_tensor(cand)
            labels = view.probs[idx].argmax(-1).numpy()
            scores = bald(mc[:, idx]).numpy().astype(np.float64)
            per_class = max(1, int(self.hp["samples"]) // view.num_classes)
            pos = easy_sample(labels, scores, per_class, view.rng)
            ids, y = cand[pos], labels[pos].astype(np.int64)
            var = mc[:, torch.as_tensor(ids), torch.as_tensor(y)].var(0, unbiased=False).numpy()
            w = 1.0 / (var.astype(np.float64) + float(self.hp["var_floor"]))
            w = w / w.mean() if len(w) else w
        return Selection(query=query, pseudo_ids=ids, pseudo_labels=y, pseudo_weights=w)
