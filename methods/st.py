"""Self-training (ST, Lee 2013): random labels plus the model's confident argmax pseudo-labels.

The self-training baselines of the paper (ST, UST, COSINE) spend the same number of gold labels
as the AL methods, but choose them at random ("we randomly sample b labeled data"), so any gain
comes from the unlabelled data alone. Each round the model of the previous round pseudo-labels
the pool with its argmax; points whose top probability reaches ``threshold`` join training with
that label. The loop trains a fresh model every round on labels + pseudo-labels, so the
teacher -> student iteration of self-training is the round loop itself.

The helpers here (:func:`pseudo_candidates`, :func:`confident`), with
:func:`methods.random.random_query`, are the shared pieces of every self-training rule in this
package.
"""
from __future__ import annotations

import numpy as np
import torch

from .base import Method, RoundView, Selection
from .random import random_query
from .registry import register


def pseudo_candidates(view: RoundView, query: np.ndarray) -> np.ndarray:
    """Ids a method may pseudo-label: no gold label yet and not queried this round.

    In the ``weak`` setting these include weakly-labelled points: a confident model prediction
    then joins training next to the noisy rule label, the way COSINE re-labels weak data.
    """
    return np.setdiff1d(view.unlabelled_ids, np.asarray(query, dtype=np.int64))


def confident(probs: torch.Tensor, ids: np.ndarray, threshold: float
              ) -> tuple[np.ndarray, np.ndarray]:
    """(ids, argmax labels) of the points among ``ids`` whose top probability is >= threshold."""
    ids = np.asarray(ids, dtype=np.int64)
    conf, label = probs[torch.as_tensor(ids)].max(-1)
    keep = (conf >= threshold).numpy()
    return ids[keep], label.numpy()[keep].astype(np.int64)


@register("st")
class SelfTraining(Method):
    family = "ST"
    queries_like = "random"
    params = {"threshold": 0.9}
    settings = ("ssal", "weak")
    cost = "one inference pass"

    def select(self, view: RoundView) -> Selection:
        query = random_query(view)
        with view.timer("pseudo_labels"):
            ids, labels = confident(view.probs, pseudo_candidates(view, query),
                                    float(self.hp["threshold"]))
        return Selection(query=query, pseudo_ids=ids, pseudo_labels=labels)
