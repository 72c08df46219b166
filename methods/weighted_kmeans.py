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

Float32 speed, float64 answers. Distances are matrix products in float32 (``dtype``): 2x faster
than float64 on a CPU, 32-64x on consumer GPUs. A float32 distance is off by at most
gamma_d (||x|| + ||c||)^2, gamma_d = d u / (1 - d u) the dot-product rounding bound (Higham
2002, 3.1), so wherever that error could change a decision the decision is taken in float64:

* a point whose runner-up centre may be as near as its best is assigned from float64 distances
  (a fraction of a percent of a real pool per step, counted in ``Clustering.near_ties``);
* centroids come from float64 sums, kept per cluster and updated by the points that moved.

So every Lloyd step is the float64 one (``dtype=torch.float64`` is the reference), computed
with less work: coordinates are taken relative to the pool's mean (smaller norms, smaller
errors), and Elkan's bounds (2003), widened by the same error, skip the points whose nearest
centre provably did not move - late steps, which move a few boundary points, recompute a
fraction of the pool. A k-means++ draw can differ from float64: where its uniform number falls
between the float32 and the float64 position of a boundary of the D^2 distribution: on real
MiniLM features about 1e-6 per draw for a 2,000-text pool, 1e-5 for a 100k one (exact float64
draws would more than double the seeding's cost).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

F64 = torch.float64


@dataclass
class Clustering:
    assign: torch.Tensor      # (n,) cluster id of each point (Eq. 3)
    centres: torch.Tensor     # (K, d) weighted centroids (Eq. 4), float64
    iterations: int           # Lloyd iterations run
    converged: bool           # assignments stopped changing before ``max_iter``
    near_ties: int = 0        # assignments settled in float64 (float32 could not tell)


def _check_weights(x: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    n = len(x)
    w = torch.ones(n, dtype=F64) if weights is None \
        else torch.as_tensor(weights).to(F64).reshape(-1)
    if len(w) != n:
        raise ValueError(f"{len(w)} weights for {n} points")
    if not torch.isfinite(w).all() or (w < 0).any():
        raise ValueError("weighted K-means needs finite, non-negative weights (uncertainties)")
    if w.sum() <= 0:  # every point certain: the weighted objective is flat, fall back to plain
        w = torch.ones(n, dtype=F64)
    return w.to(x.device)


def _dot_error(dtype: torch.dtype, d: int) -> float:
    """gamma of a d-term dot product, +4 terms for the norms, the sums and the rounded inputs:
    |computed - exact| <= gamma * sum |x_i y_i|. TF32/bf16 matmuls, where torch may use them
    for float32, round to 11/8 bits."""
    u = torch.finfo(dtype).eps / 2
    if dtype == torch.float32:
        u = {"high": 2.0 ** -11, "medium": 2.0 ** -8}.get(torch.get_float32_matmul_precision(), u)
    return (d + 4) * u / (1 - (d + 4) * u)


def _chunks(rows: torch.Tensor | None, n: int, device: torch.device) -> list:
    """Row blocks of a pass over all ``n`` rows (slices: views, no copy) or over ``rows``. On a
    CPU a block's scores stay in cache and its copies small enough for the allocator to reuse
    (fresh pages cost more than the arithmetic); elsewhere one block."""
    size = 4096 if device.type == "cpu" else 1 << 20
    if rows is None:
        return [slice(s, min(s + size, n)) for s in range(0, n, size)]
    return list(rows.split(size))


@contextmanager
def _one_thread(device: torch.device):
    """On a CPU, one thread: the steps are many small blocks, for which waking a second thread
    costs more than it brings - and with more runnable threads than cores (a shared machine),
    far more: 45 s instead of 3.3 s of CPU time for a 100k pool on two busy cores."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _take(t: torch.Tensor, part) -> torch.Tensor:
    return t[part] if isinstance(part, slice) else t.index_select(0, part)


def _ids(part, device) -> torch.Tensor:
    return torch.arange(part.start, part.stop, device=device) if isinstance(part, slice) else part


class _Pool:
    """The points twice: ``x`` in ``dtype`` relative to their mean (distances do not change, the
    rounding errors, relative to the norms, shrink: features sharing a large component would
    otherwise all be near ties), and exact float64 rows in the same coordinates on demand."""

    def __init__(self, src: torch.Tensor, dtype: torch.dtype):
        wide = torch.promote_types(src.dtype, dtype)   # x rounds the exact difference once
        self.src, self.origin = src, src.mean(0).to(wide)
        self.x = (src.to(wide) - self.origin).to(dtype)
        self.norms = self.x.norm(dim=1)
        self.sq = self.norms * self.norms
        self.gamma = _dot_error(dtype, src.shape[1])

    def rows64(self, ids: torch.Tensor) -> torch.Tensor:
        return self.src.index_select(0, ids).to(F64) - self.origin.to(F64)


# ----------------------------------------------------------------------------------------------
# Seeding
# ----------------------------------------------------------------------------------------------

def _seeds(pool: _Pool, w: torch.Tensor, k: int, rng: np.random.Generator) -> list[int]:
    """Weighted D^2 sampling. D^2 to a new seed is one matrix-vector product in the working
    precision; where it is within its rounding error, 2 gamma (||x|| + ||c||)^2, of zero it is
    recomputed as a float64 difference, so a seed's exact duplicates are at 0 (never drawn)."""
    x, norms = pool.x, pool.norms
    wn = w.cpu().numpy()

    def sq_dist_to(c: int) -> torch.Tensor:
        d2 = (pool.sq - 2 * (x @ x[c]) + pool.sq[c]).clamp_min_(0)
        near = torch.nonzero(d2 <= 2 * pool.gamma * (norms + norms[c]) ** 2).squeeze(1)
        if len(near):
            at = torch.full_like(near, c)
            d2[near] = ((pool.rows64(near) - pool.rows64(at)) ** 2).sum(1).to(d2.dtype)
        return d2

    chosen = [int(rng.choice(len(x), p=wn / wn.sum()))]
    d2 = sq_dist_to(chosen[0])
    for _ in range(1, min(k, len(x))):
        score = wn * d2.cpu().numpy()
        total = score.sum()
        if total <= 0:
            break
        chosen.append(int(rng.choice(len(x), p=score / total)))
        d2 = torch.minimum(d2, sq_dist_to(chosen[-1]))
    return chosen


def kmeans_pp(x: torch.Tensor, weights: torch.Tensor | None, k: int,
              rng: np.random.Generator, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Indices of up to ``k`` seed points by weighted D^2 sampling.

    Fewer than ``k`` come back only when every remaining point of positive weight coincides
    with a chosen centre (fewer distinct points than clusters), so no two seeds are equal.
    """
    x = torch.as_tensor(x)
    pool = _Pool(x, dtype)
    return torch.as_tensor(_seeds(pool, _check_weights(x, weights), k, rng), dtype=torch.long,
                           device=x.device)


# ----------------------------------------------------------------------------------------------
# Eq. 3: assignment
# ----------------------------------------------------------------------------------------------

class _Assignment:
    """Eq. 3 for one pool, step after step: each point's nearest centre with Elkan's bounds (an
    upper bound on the distance to it, a lower bound on the distance to each other centre,
    kept as (K, n): the per-step test reduces over K contiguous rows, 10x faster on a CPU).

    argmin_k ||x - c_k||^2 = argmin_k (||c_k||^2 - 2 x.c_k): one matrix product, no n x K x d
    difference tensor.
    """

    def __init__(self, pool: _Pool):
        self.pool = pool
        # rounding a lower bound down by a shift errs by at most u x (a distance <= 2 max ||x||)
        x = pool.x
        self.slack = 2 * torch.finfo(x.dtype).eps * float(pool.norms.max()) if len(x) else 0.0
        self.assign = self.upper = self.lower = self._centres = self._buffer = None
        self.near_ties = 0

    def step(self, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Assign every point to its nearest of ``centres`` (float64, (K, d)); returns the ids
        of the points that changed cluster and their previous clusters."""
        x = self.pool.x
        n, dev = len(x), x.device
        if self.assign is None:
            self.assign = torch.full((n,), -1, dtype=torch.long, device=dev)
            self.upper = torch.empty(n, dtype=F64, device=dev)
            self.lower = torch.empty(len(centres), n, dtype=x.dtype, device=dev)
            rows = None
        else:  # the triangle inequality, since the centres the bounds were computed for
            shift = (centres - self._centres).norm(dim=1)
            self.upper += shift[self.assign]
            self.lower -= (shift + self.slack).to(x.dtype)[:, None]
            rows = torch.nonzero(self.lower.amin(0).to(F64) <= self.upper).squeeze(1)
            if len(rows) > n // 2:
                rows = None
        self._centres = centres
        c64 = centres - self.pool.origin.to(F64)
        c = c64.to(x.dtype)
        self._c = (c, (c * c).sum(1), c64, (c64 * c64).sum(1), c64.norm(dim=1).max().to(x.dtype))
        moved, before = [], []
        for part in _chunks(rows, n, dev):
            new = self._nearest(part)
            old = _take(self.assign, part)
            changed = torch.nonzero(new != old).squeeze(1)
            moved.append(_ids(part, dev)[changed])
            before.append(old[changed])
            self.assign[part] = new
        return torch.cat(moved), torch.cat(before)

    def _nearest(self, part) -> torch.Tensor:
        """The nearest centres of the rows ``part``, their bounds stored. A score is off by at
        most gamma (||x|| + max ||c||)^2, so the bounds widen by that, and a point whose
        runner-up may be as near as its best is decided from float64 scores (and gets an
        infinite upper bound: a fresh look next step)."""
        pool, (c, cc, c64, cc64, cmax) = self.pool, self._c
        if isinstance(part, slice):
            x, norms, sq = pool.x[part], pool.norms[part], pool.sq[part]
        else:   # into a reused buffer: fresh pages cost more than the copy
            x = torch.index_select(pool.x, 0, part, out=self._rows(len(part)))
            norms, sq = pool.norms.index_select(0, part), pool.sq.index_select(0, part)
        scores = torch.addmm(cc, x, c.T, alpha=-2)
        best, assign = scores.min(1)
        err = pool.gamma * (norms + cmax) ** 2
        upper = (sq + best + err).to(F64).sqrt_()
        lower = scores.T.contiguous().add_(sq - err).clamp_min_(0).sqrt_()   # (K, m)
        lower.scatter_(0, assign[None, :], float("inf"))
        tied = torch.nonzero(lower.amin(0).to(F64) <= upper).squeeze(1)
        if len(tied):
            rows = pool.rows64(_ids(part, x.device)[tied])
            assign[tied] = torch.addmm(cc64, rows, c64.T, alpha=-2).argmin(1)
            upper[tied] = float("inf")
            self.near_ties += len(tied)
        self.upper[part] = upper
        if isinstance(part, slice):
            self.lower[:, part] = lower
        else:
            self.lower.index_copy_(1, part, lower)
        return assign

    def _rows(self, m: int) -> torch.Tensor:
        if self._buffer is None or len(self._buffer) < m:
            self._buffer = torch.empty(m, self.pool.x.shape[1], dtype=self.pool.x.dtype,
                                       device=self.pool.x.device)
        return self._buffer[:m]


def assign_points(x: torch.Tensor, centres: torch.Tensor,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Eq. 3: each point goes to its nearest centre (Euclidean), distances in ``dtype``."""
    a = _Assignment(_Pool(torch.as_tensor(x), dtype))
    a.step(torch.as_tensor(centres).to(F64))
    return a.assign


# ----------------------------------------------------------------------------------------------
# Eq. 4: centroids
# ----------------------------------------------------------------------------------------------

class _ClusterSums:
    """Per cluster, float64 sums of a_i x_i and a_i and the counts of members (of positive
    weight): Eq. 4's numerator and denominator, updated by the points that change cluster."""

    def __init__(self, src: torch.Tensor, weights: torch.Tensor, assign: torch.Tensor, k: int):
        self.src, self.w = src, weights
        self.wx = torch.zeros(k, src.shape[1], dtype=F64, device=src.device)
        self.wsum = torch.zeros(k, dtype=F64, device=src.device)
        self.count = torch.zeros(k, dtype=torch.long, device=src.device)
        self.weighted = torch.zeros_like(self.count)
        for part in _chunks(None, len(src), src.device):
            self._add(part, assign[part], 1)

    def _add(self, part, clusters: torch.Tensor, sign: int, rows=None) -> torch.Tensor:
        w = _take(self.w, part)
        if rows is None:   # a_i x_i, float64
            rows = _take(self.src, part).to(F64, copy=True).mul_(w[:, None])
        self.wx.index_add_(0, clusters, rows, alpha=sign)
        self.wsum.index_add_(0, clusters, w, alpha=sign)
        self.count.index_add_(0, clusters, torch.ones_like(clusters), alpha=sign)
        self.weighted.index_add_(0, clusters, (w > 0).long(), alpha=sign)
        return rows

    def move(self, ids: torch.Tensor, old: torch.Tensor, new: torch.Tensor) -> None:
        for part, o, n in zip(*(t.split(4096) for t in (ids, old, new))):
            self._add(part, n, 1, self._add(part, o, -1))

    def centres(self, old: torch.Tensor, assign: torch.Tensor) -> torch.Tensor:
        """Eq. 4. A cluster whose members all weigh zero takes their plain mean (the weighted
        mean is undefined there); an empty cluster keeps its previous centre."""
        mu = torch.where(self.weighted[:, None] > 0,
                         self.wx / self.wsum[:, None].clamp_min(1e-300), old.to(F64))
        for k in torch.nonzero((self.weighted == 0) & (self.count > 0)).flatten().tolist():
            mu[k] = self.src[assign == k].to(F64).mean(0)
        return mu


def weighted_centroids(x: torch.Tensor, weights: torch.Tensor, assign: torch.Tensor,
                       old: torch.Tensor) -> torch.Tensor:
    """Eq. 4: mu_k = sum_{i in C_k} a_i v_i / sum_{i in C_k} a_i, from float64 sums."""
    return _ClusterSums(x, weights.to(F64), assign, len(old)).centres(old, assign)


# ----------------------------------------------------------------------------------------------
# Lloyd
# ----------------------------------------------------------------------------------------------

def weighted_kmeans(x: torch.Tensor, weights: torch.Tensor | None, k: int,
                    rng: np.random.Generator, max_iter: int = 100, tol: float = 1e-4,
                    device: torch.device | str | None = None,
                    dtype: torch.dtype = torch.float32, sample: int | None = None) -> Clustering:
    """Alternate Eq. 3 and Eq. 4 from a k-means++ start until the assignments settle.

    Settled = at most ``floor(tol * n)`` points changed cluster in the last step: exactly a
    fixed point below 1 / tol points, and on a 100k pool it spares the long tail of Lloyd
    iterations that move a handful of boundary points. ``weights=None`` is plain K-means.
    Distances in ``dtype`` on ``device`` (default: where ``x`` is); ``dtype=torch.float64`` is
    the reference that the float32 path reproduces.

    ``sample``: on a pool larger than this, the centroids are fitted on a seeded uniform sample
    of ``sample`` points (with their weights) and every point then goes to its nearest centroid.
    K <= 40 centroids of a 384-d space are pinned down by 20k points as well as by 500k, while a
    Lloyd iteration costs in proportion to n: at 100k texts the full fit takes 100 iterations
    without settling (a few hundred boundary points drift each step) and 2.6% of a CPU round.
    Pools no larger than ``sample`` are clustered exactly as without it (no random draw is added).
    """
    src = torch.as_tensor(x)
    src = src.to(device if device is not None else src.device)
    w = _check_weights(src, weights)
    if sample is not None and len(src) > int(sample):
        part = torch.as_tensor(np.sort(rng.choice(len(src), size=int(sample), replace=False)),
                               device=src.device)
        fit = weighted_kmeans(src[part], w[part], k, rng, max_iter, tol, dtype=dtype)
        with torch.autocast(src.device.type, enabled=False), _one_thread(src.device):
            full = _Assignment(_Pool(src, dtype))
            full.step(fit.centres)
        return Clustering(full.assign, fit.centres, fit.iterations, fit.converged,
                          fit.near_ties + full.near_ties)
    allowed = int(tol * len(src))
    with torch.autocast(src.device.type, enabled=False), _one_thread(src.device):
        pool = _Pool(src, dtype)
        nearest = _Assignment(pool)
        centres = src[_seeds(pool, w, k, rng)].to(F64)
        nearest.step(centres)
        sums = _ClusterSums(src, w, nearest.assign, len(centres))
        for it in range(1, max_iter + 1):
            centres = sums.centres(centres, nearest.assign)
            moved, before = nearest.step(centres)
            sums.move(moved, before, nearest.assign[moved])
            if len(moved) <= allowed:
                return Clustering(nearest.assign, centres, it, True, nearest.near_ties)
    return Clustering(nearest.assign, centres, max_iter, False, nearest.near_ties)
