"""Weighted K-means (ACTUNE Eq. 3-4, Huang et al. 2005) with k-means++ seeding, in torch.

ACTUNE clusters the penultimate features of the unlabelled pool with each point weighted by its
uncertainty a(x): a centroid is the uncertainty-weighted mean of its members (Eq. 4), so it is
pulled towards the uncertain part of its region and the partition resolves the uncertain areas
of the space more finely than plain K-means would. With all weights equal this is plain
K-means (the ablation "w/o WClus").

The seeding is the k-means++ of the weighted objective: the first centre is drawn with
probability proportional to the weight, each further one proportional to weight x squared
distance to the nearest chosen centre (what ``sklearn.cluster.kmeans_plusplus`` does with
``sample_weight``). Every draw comes from the caller's numpy generator, so a run's seed fixes the
clustering (the official code fixes the k-means seed at 0 whatever the run seed).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Clustering:
    assign: torch.Tensor      # (n,) cluster id of each point (Eq. 3)
    centres: torch.Tensor     # (K, d) weighted centroids (Eq. 4)
    iterations: int           # Lloyd iterations run
    converged: bool           # assignments stopped changing before ``max_iter``


def _check_weights(x: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    n = len(x)
    w = torch.ones(n, dtype=torch.float64) if weights is None \
        else torch.as_tensor(weights).to(torch.float64).reshape(-1)
    if len(w) != n:
        raise ValueError(f"{len(w)} weights for {n} points")
    if not torch.isfinite(w).all() or (w < 0).any():
        raise ValueError("weighted K-means needs finite, non-negative weights (uncertainties)")
    if w.sum() <= 0:  # every point certain: the weighted objective is flat, fall back to plain
        w = torch.ones(n, dtype=torch.float64)
    return w.to(x.device)


def _sq_dist_to(x: torch.Tensor, sq_norms: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Squared distances of every row of ``x`` to the point ``c``, as one matrix-vector product.

    ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2; values within rounding of zero are set to zero, so
    a chosen centre and its exact duplicates stay at distance 0 (never drawn again).
    """
    cc = c @ c
    d2 = sq_norms - 2 * (x @ c) + cc
    return torch.where(d2 <= 1e-12 * (sq_norms + cc), torch.zeros_like(d2), d2)


def kmeans_pp(x: torch.Tensor, weights: torch.Tensor | None, k: int,
              rng: np.random.Generator) -> torch.Tensor:
    """Indices of up to ``k`` seed points by weighted D^2 sampling.

    Fewer than ``k`` come back only when every remaining point of positive weight coincides
    with a chosen centre (fewer distinct points than clusters), so no two seeds are equal.
    """
    x = torch.as_tensor(x).to(torch.float64)
    w = _check_weights(x, weights).cpu().numpy()
    sq_norms = (x * x).sum(1)
    first = int(rng.choice(len(x), p=w / w.sum()))
    chosen = [first]
    d2 = _sq_dist_to(x, sq_norms, x[first])
    for _ in range(1, min(k, len(x))):
        score = w * d2.cpu().numpy()
        total = score.sum()
        if total <= 0:
            break
        nxt = int(rng.choice(len(x), p=score / total))
        chosen.append(nxt)
        d2 = torch.minimum(d2, _sq_dist_to(x, sq_norms, x[nxt]))
    return torch.as_tensor(chosen, dtype=torch.long, device=x.device)


def assign_points(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Eq. 3: each point goes to its nearest centre (Euclidean).

    argmin_k ||x - c_k||^2 = argmin_k (||c_k||^2 - 2 x.c_k): one matrix product, no n x K x d
    difference tensor.
    """
    return ((centres * centres).sum(1) - 2 * (x @ centres.T)).argmin(1)


def weighted_centroids(x: torch.Tensor, weights: torch.Tensor, assign: torch.Tensor,
                       old: torch.Tensor) -> torch.Tensor:
    """Eq. 4: mu_k = sum_{i in C_k} a_i v_i / sum_{i in C_k} a_i.

    A cluster whose members all weigh zero takes their plain mean (the weighted mean is
    undefined there); an empty cluster keeps its previous centre. Both sums come from one
    product of a (2K x n) membership matrix with ``x``.
    """
    k = len(old)
    n = len(x)
    w = weights.to(x.dtype)
    member = torch.zeros(2 * k, n, dtype=x.dtype, device=x.device)
    cols = torch.arange(n, device=x.device)
    member[assign, cols] = w
    member[assign + k, cols] = 1.0
    sums = member @ x
    totals = member.sum(1)
    wsum, count = totals[:k, None], totals[k:, None]
    plain = torch.where(count > 0, sums[k:] / count.clamp_min(1), old)
    return torch.where(wsum > 0, sums[:k] / wsum.clamp_min(1e-300), plain)


def weighted_kmeans(x: torch.Tensor, weights: torch.Tensor | None, k: int,
                    rng: np.random.Generator, max_iter: int = 100, tol: float = 1e-4,
                    device: torch.device | str | None = None) -> Clustering:
    """Alternate Eq. 3 and Eq. 4 from a k-means++ start until the assignments settle.

    Settled = at most ``floor(tol * n)`` points changed cluster in the last step: exactly a
    fixed point below 1 / tol points, and on a 100k pool it spares the long tail of Lloyd
    iterations that move a handful of boundary points. ``weights=None`` is plain K-means.
    Computed in float64 (on ``device``, default: where ``x`` is): the extra precision keeps
    near-ties from flipping between platforms.
    """
    x = torch.as_tensor(x).to(device=device or torch.as_tensor(x).device, dtype=torch.float64)
    w = _check_weights(x, weights)
    allowed = int(tol * len(x))
    centres = x[kmeans_pp(x, w, k, rng)].clone()
    assign = assign_points(x, centres)
    for it in range(1, max_iter + 1):
        centres = weighted_centroids(x, w, assign, centres)
        new = assign_points(x, centres)
        changed = int((new != assign).sum())
        assign = new
        if changed <= allowed:
            return Clustering(assign, centres, it, True)
    return Clustering(assign, centres, max_iter, False)
