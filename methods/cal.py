"""CAL (Margatina et al. 2021): contrastive active learning.

A point is informative when the model predicts it differently from its nearest *labelled*
neighbours in feature space: such points sit where similar inputs get dissimilar predictions.
For each candidate x, take its k nearest labelled points (Euclidean distance between
L2-normalised penultimate features, i.e. cosine similarity) and score
``mean_j KL(p_j || p_x)``, with p the current model's predicted probabilities for both the
neighbours and x (not the neighbours' gold labels). Query the top b.

When fewer than k labelled points exist (early rounds, or a scored point that is itself labelled
and is excluded from its own neighbourhood) all available ones are used.
"""
import numpy as np
import torch
import torch.nn.functional as F

from .base import RoundView, UncertaintyMethod
from .registry import register

EPS = 1e-12


def kl_rows(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p_i || q_i) per row, with 0 log 0 = 0 and q clamped away from 0."""
    p, q = p.double(), q.double()
    return (p * (torch.log(p.clamp_min(EPS)) - torch.log(q.clamp_min(EPS)))).sum(-1)


def cal_scores(probs: torch.Tensor, features: torch.Tensor, ids: np.ndarray,
               labelled_ids: np.ndarray, k: int = 10, chunk: int = 2048) -> torch.Tensor:
    """Mean KL(p_neighbour || p_x) over each x's k nearest labelled neighbours (float64).

    Distances are computed in chunks of ``chunk`` candidates, so memory stays
    O(chunk * n_labelled) whatever the pool size.
    """
    ids = torch.as_tensor(np.asarray(ids, dtype=np.int64))
    lab = torch.as_tensor(np.asarray(labelled_ids, dtype=np.int64))
    out = torch.zeros(len(ids), dtype=torch.float64)
    if len(lab) == 0 or len(ids) == 0:
        return out  # no neighbours: nothing to contrast with (ties are broken at random)
    z = F.normalize(features.double(), dim=-1)
    z_lab, p_lab = z[lab], probs[lab].double()
    for start in range(0, len(ids), chunk):
        sub = ids[start:start + chunk]
        dist = torch.cdist(z[sub], z_lab)                      # (m, n_lab)
        dist[sub[:, None] == lab[None, :]] = float("inf")      # a labelled point is not its own neighbour
        k_eff = min(k, len(lab))
        d_nn, nn = dist.topk(k_eff, dim=1, largest=False)
        valid = torch.isfinite(d_nn)                           # fewer than k real neighbours
        kl = kl_rows(p_lab[nn], probs[sub].double()[:, None, :].expand(-1, k_eff, -1))
        count = valid.sum(1)
        out[start:start + chunk] = torch.where(
            count > 0, (kl * valid).sum(1) / count.clamp_min(1), torch.zeros_like(count, dtype=kl.dtype))
    return out


@register("cal")
class CAL(UncertaintyMethod):
    family = "AL"
    params = {"k": 10}
    cost = "one inference pass + k-NN search over the labelled features"

    def scores(self, view: RoundView, ids: np.ndarray) -> torch.Tensor:
        with view.timer("knn_kl"):
            return cal_scores(view.probs, view.features, ids, view.labelled_ids, int(self.hp["k"]))
