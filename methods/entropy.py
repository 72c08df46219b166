"""Entropy sampling (Holub et al. 2008): query the points of maximal predictive entropy."""
import numpy as np
import torch

from .base import RoundView, UncertaintyMethod, entropy
from .registry import register


@register("entropy")
class Entropy(UncertaintyMethod):
    family = "AL"

    def scores(self, view: RoundView, ids: np.ndarray) -> torch.Tensor:
        return entropy(view.probs[ids])
