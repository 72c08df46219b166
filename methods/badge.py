"""BADGE (Ash et al. 2020): batch active learning by diverse gradient embeddings.

Each candidate x is represented by the gradient of the cross-entropy loss, at the model's own
predicted label y^ = argmax p, with respect to the last layer's weights:
``g_x = (p_x - onehot(y^)) (outer) h_x`` with h_x the penultimate features (the head's input).
Its norm is large where the model is uncertain (a lower bound on the gradient for any label) and
its direction encodes what x would teach the model, so k-means++ seeding on g picks a batch that
is both uncertain and diverse: first the largest-norm point, then each next point with
probability proportional to its squared distance to the nearest point already chosen (D^2
sampling).

g is never materialised (it would be n x (C*d)): ``<g_i, g_j> = <q_i, q_j> <h_i, h_j>`` with
q = p - onehot(y^), so one step of D^2 sampling costs O(n (C + d)) time and memory.
"""
import numpy as np
import torch

from .base import Method, RoundView, Selection
from .registry import register


def grad_factors(probs: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(q, h) with g = q (outer) h the last-layer gradient embedding (float64)."""
    p = probs.double()
    q = p - torch.nn.functional.one_hot(p.argmax(-1), p.shape[-1]).double()
    return q, features.double()


def gradient_embedding(probs: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """The explicit (n, C*d) embedding, row-major like ``nn.Linear.weight`` (C, d): tests only."""
    q, h = grad_factors(probs, features)
    return (q[:, :, None] * h[:, None, :]).reshape(len(q), -1)


def kmeans_pp_factorised(q: torch.Tensor, h: torch.Tensor, k: int,
                         rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding on g_i = q_i (outer) h_i; returns k distinct row indices.

    First centre: the largest ||g|| (ties at random). Then D^2 sampling; points already chosen
    have distance 0 and are excluded explicitly (round-off cannot pick one twice). If every
    remaining point coincides with a chosen one (all D^2 = 0), the next pick is uniform among the
    remaining points rather than a repeat.
    """
    n = len(q)
    k = min(k, n)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    sq = (q * q).sum(1) * (h * h).sum(1)                       # ||g_i||^2
    norms = sq.numpy()
    top = np.flatnonzero(norms == norms.max())
    chosen = [int(rng.choice(top))]
    taken = np.zeros(n, dtype=bool)
    taken[chosen[0]] = True
    d2 = torch.full((n,), float("inf"), dtype=torch.float64)
    while len(chosen) < k:
        c = chosen[-1]
        dist = sq + sq[c] - 2.0 * (q @ q[c]) * (h @ h[c])      # ||g_i - g_c||^2, factorised
        d2 = torch.minimum(d2, dist.clamp_min(0.0))
        w = d2.numpy().copy()
        w[taken] = 0.0
        total = w.sum()
        if total > 0 and np.isfinite(total):
            nxt = int(rng.choice(n, p=w / total))
        else:
            nxt = int(rng.choice(np.flatnonzero(~taken)))
        chosen.append(nxt)
        taken[nxt] = True
    return np.asarray(chosen, dtype=np.int64)


@register("badge")
class BADGE(Method):
    family = "AL"
    cost = "one inference pass + k-means++ seeding on gradient embeddings, O(b n (C + d))"

    def select(self, view: RoundView) -> Selection:
        ids = np.asarray(view.unlabelled_ids, dtype=np.int64)
        with view.timer("gradient_embedding"):
            where = torch.as_tensor(ids)
            q, h = grad_factors(view.probs[where], view.features[where])
        with view.timer("kmeans_pp"):
            picks = kmeans_pp_factorised(q, h, view.budget, view.rng)
        return Selection(query=ids[picks])
