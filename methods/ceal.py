"""CEAL (Wang et al. 2016): cost-effective active learning.

Query the ``budget`` most uncertain points by predictive entropy; pseudo-label every remaining
point whose entropy is below a threshold that tightens over the rounds,
``delta_t = delta_0 - dr * t`` (t = 0 at the first query), with the model's argmax. The
pseudo-labelled set is re-selected from scratch every round, never accumulated: a point that was
confident once and is not any more drops out. (A community port accumulates them and uses the
entropy value, cast to int, as the label; neither is CEAL.)

Entropy is in nats and not normalised, as in CEAL; the defaults suit 2-14 classes after ~100
labels: 0.05 nats is a top probability of ~0.99 for 6 classes.
"""
from __future__ import annotations

import numpy as np
import torch

from .base import Method, RoundView, Selection, entropy, top_k
from .registry import register
from .st import pseudo_candidates


@register("ceal")
class CEAL(Method):
    family = "SSAL"
    queries_like = "entropy"
    params = {"delta0": 0.05, "dr": 0.004}
    settings = ("ssal", "weak")
    cost = "one inference pass"

    def threshold(self, round: int) -> float:
        """delta_t for the selection made before training round ``round`` (1-based)."""
        return max(0.0, float(self.hp["delta0"]) - float(self.hp["dr"]) * (round - 1))

    def select(self, view: RoundView) -> Selection:
        ent = entropy(view.probs)
        ids = view.unlabelled_ids
        query = top_k(ent[torch.as_tensor(ids)], ids, view.budget, view.rng)
        with view.timer("pseudo_labels"):
            cand = pseudo_candidates(view, query)
            keep = (ent[torch.as_tensor(cand)] < self.threshold(view.round)).numpy()
            pseudo = cand[keep]
            labels = view.probs[torch.as_tensor(pseudo, dtype=torch.long)].argmax(-1).numpy()
        return Selection(query=query, pseudo_ids=pseudo, pseudo_labels=labels.astype(np.int64))
