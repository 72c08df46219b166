"""BASS (Rottmann et al. 2018): Bayesian active semi-supervised learning with MC dropout.

Like CEAL, but the uncertainty comes from MC dropout: query the ``budget`` unlabelled points of
highest BALD score, and pseudo-label the points that are most certain under the same dropout
passes, i.e. whose MC-averaged top probability reaches ``threshold``, with the MC-averaged argmax.
The passes are ``view.mc_dropout(passes)``, computed once per round and shared by both rules
(and with the ``bald`` method's code path: the score is :func:`methods.base.bald`).
"""
from __future__ import annotations

import torch

from .base import Method, RoundView, Selection, bald, top_k
from .registry import register
from .st import confident, pseudo_candidates


@register("bass")
class BASS(Method):
    family = "SSAL"
    queries_like = "bald"
    params = {"passes": 10, "threshold": 0.9}
    settings = ("ssal", "weak")
    cost = "T=10 dropout passes, ~16x one inference pass"

    def select(self, view: RoundView) -> Selection:
        with view.timer("mc_dropout"):
            mc = view.mc_dropout(int(self.hp["passes"]))     # (T, n_pool, C), cached per round
        ids = view.unlabelled_ids
        query = top_k(bald(mc[:, torch.as_tensor(ids)]), ids, view.budget, view.rng)
        with view.timer("pseudo_labels"):
            pseudo, labels = confident(mc.mean(0), pseudo_candidates(view, query),
                                       float(self.hp["threshold"]))
        return Selection(query=query, pseudo_ids=pseudo, pseudo_labels=labels)
