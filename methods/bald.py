"""BALD (Houlsby et al. 2011; Gal, Islam & Ghahramani 2017): Bayesian active learning by disagreement.

With T stochastic forward passes (MC dropout) the score is the mutual information between the
prediction and the model parameters, I[y; w | x] ~= H[mean_t p_t(x)] - mean_t H[p_t(x)]: high
where the passes are individually confident but disagree with each other, zero where all passes
agree. The passes come from ``view.mc_dropout`` (``benchmark.backbones.mc_dropout_probs``): all T
passes run as one batched forward with dropout switched on for them only, and every module's
train/eval mode is restored afterwards.
"""
import numpy as np
import torch

from .base import RoundView, UncertaintyMethod, bald
from .registry import register


@register("bald")
class BALD(UncertaintyMethod):
    family = "AL"
    params = {"passes": 10}
    cost = "T=10 dropout passes, ~16x one inference pass"

    def scores(self, view: RoundView, ids: np.ndarray) -> torch.Tensor:
        with view.timer("mc_dropout"):
            mc = view.mc_dropout(int(self.hp["passes"]))   # (T, n_pool, C), cached per round
        return bald(mc[:, torch.as_tensor(np.asarray(ids, dtype=np.int64))])
