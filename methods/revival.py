"""REVIVAL (Guo et al. 2021): graph label propagation + adversarial boundary queries.

REVIVAL was written for images and has no public code; this is our reading of its two halves:

* SSL -> virtual labels. A symmetric kNN graph over the round's L2-normalised pool features
  (W_ij = max(0, cos_ij)^gamma for the ``k`` nearest neighbours, W + W^T), normalised as
  S = D^-1/2 W D^-1/2, and label propagation Z = (I - alpha S)^-1 Y (Zhou et al. 2004) seeded with
  the labelled set (in the ``weak`` setting that includes the rule labels), solved per class by
  conjugate gradients. Virtual labels argmax Z become the
  pseudo-labels of the unlabelled pool, weighted by their certainty 1 - H(z)/log C (Iscen et al.
  2019); points no labelled point reaches get none.
* AL -> boundary points. For each unlabelled point, the smallest perturbation of its feature
  vector that changes the classifier head's prediction (DeepFool on ``view.extras.head``: exact in
  one step for a linear head, iterated for any other differentiable head). Points whose virtual
  label disagrees with the model come first (the graph and the classifier place them in different
  clusters), then the points with the smallest adversarial perturbation.

The paper reports REVIVAL running out of memory on DBpedia; nothing here is n x n. The graph is
built in row blocks of ~64 MB of similarities and stored sparse (n x 2k entries), and the
adversarial pass runs in chunks.
"""
from __future__ import annotations

import inspect
import math

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from scipy.sparse.linalg import cg

from .base import Method, RoundView, Selection, entropy, top_k
from .registry import register
from .st import pseudo_candidates

BLOCK_ELEMENTS = 1 << 24   # similarities held at once while building the graph (64 MB)
# scipy >= 1.12 calls cg's relative tolerance ``rtol``; older versions ``tol``
_CG_TOL = {"rtol": 1e-6} if "rtol" in inspect.signature(cg).parameters else {"tol": 1e-6}


def knn_graph(features: torch.Tensor, k: int, gamma: float = 3.0) -> sp.csr_matrix:
    """Symmetric sparse affinity W + W^T of the cosine kNN graph (self excluded)."""
    z = F.normalize(features.float(), dim=-1)
    n = len(z)
    k = min(k, n - 1)
    rows = max(1, BLOCK_ELEMENTS // n)
    nbr = np.empty((n, k), dtype=np.int64)
    sim = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, rows):
        s = z[start:start + rows] @ z.T
        r = torch.arange(len(s))
        s[r, start + r] = -math.inf
        v, i = s.topk(k, dim=1)
        nbr[start:start + len(s)], sim[start:start + len(s)] = i.numpy(), v.numpy()
        del s
    w = np.clip(sim, 0, None) ** gamma
    W = sp.csr_matrix((w.ravel(), (np.repeat(np.arange(n), k), nbr.ravel())), shape=(n, n))
    return (W + W.T).tocsr()


def propagate(W: sp.csr_matrix, seeds: np.ndarray, seed_labels: np.ndarray, num_classes: int,
              alpha: float = 0.99, maxiter: int = 50) -> np.ndarray:
    """Z = (I - alpha S)^-1 Y with S the symmetrically normalised W; rows are seeded one-hots."""
    deg = np.asarray(W.sum(1)).ravel()
    inv = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1e-12)), 0.0)
    D = sp.diags(inv)
    A = sp.identity(W.shape[0], format="csr") - alpha * (D @ W @ D)
    Z = np.zeros((W.shape[0], num_classes))
    for c in range(num_classes):
        y = np.zeros(W.shape[0])
        y[seeds[seed_labels == c]] = 1.0
        if y.any():
            Z[:, c], _ = cg(A, y, maxiter=maxiter, **_CG_TOL)
    return np.clip(Z, 0, None)


def boundary_distance(head: torch.nn.Module, features: torch.Tensor, steps: int = 5,
                      overshoot: float = 0.02, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """(||r||, prediction) per row: the norm of DeepFool's perturbation r that flips ``head``'s
    prediction (inf if ``steps`` iterations do not), and the unperturbed prediction."""
    device = next(head.parameters()).device
    was_training = head.training
    head.eval()
    dists, preds = [], []
    try:
        for start in range(0, len(features), chunk):
            x0 = features[start:start + chunk].to(device).float()
            with torch.no_grad():
                k0 = head(x0).argmax(-1)
            r_tot = torch.zeros_like(x0)
            done = torch.zeros(len(x0), dtype=torch.bool, device=device)
            for _ in range(steps):
                x = (x0 + (1 + overshoot) * r_tot).requires_grad_(True)
                logits = head(x)
                done = done | (logits.argmax(-1) != k0)
                if done.all():
                    break
                grads = torch.stack([torch.autograd.grad(logits[:, c].sum(), x,
                                                         retain_graph=True)[0]
                                     for c in range(logits.shape[1])], 1)       # (B, C, d)
                rows = torch.arange(len(x0), device=device)
                w = grads - grads[rows, k0][:, None]                             # (B, C, d)
                f = (logits - logits[rows, k0][:, None]).detach()                # (B, C) <= 0
                norm = w.norm(dim=-1).clamp_min(1e-12)
                ratio = f.abs() / norm
                ratio[rows, k0] = math.inf
                best = ratio.argmin(-1)
                step = (ratio[rows, best] / norm[rows, best])[:, None] * w[rows, best]
                r_tot = r_tot + torch.where(done[:, None], torch.zeros_like(step), step.detach())
            with torch.no_grad():
                done = done | (head(x0 + (1 + overshoot) * r_tot).argmax(-1) != k0)
            d = r_tot.norm(dim=-1)
            d[~done] = math.inf
            dists.append(d.cpu().numpy())
            preds.append(k0.cpu().numpy())
    finally:
        head.train(was_training)
    return np.concatenate(dists), np.concatenate(preds)


@register("revival")
class REVIVAL(Method):
    family = "SSAL"
    params = {"k": 10, "alpha": 0.99, "gamma": 3.0, "steps": 5, "overshoot": 0.02}
    settings = ("ssal", "weak")
    cost = "one inference pass + sparse kNN graph over the pool + head gradients"

    def select(self, view: RoundView) -> Selection:
        C = view.num_classes
        with view.timer("knn_graph"):
            W = knn_graph(view.features, int(self.hp["k"]), float(self.hp["gamma"]))
        with view.timer("label_propagation"):
            Z = propagate(W, view.labelled_ids, view.labelled_y, C, float(self.hp["alpha"]))
            mass = Z.sum(1)
            reached = mass > 0
            zn = Z / np.where(reached, mass, 1.0)[:, None]
            virtual = np.where(reached, zn.argmax(1), -1)
            certainty = np.where(reached, 1.0 - entropy(torch.from_numpy(zn)).numpy() / math.log(C),
                                 0.0)
        ids = view.unlabelled_ids
        with view.timer("adversarial"):
            dist, pred = boundary_distance(view.extras.head, view.features[torch.as_tensor(ids)],
                                           int(self.hp["steps"]), float(self.hp["overshoot"]))
        disagree = (virtual[ids] >= 0) & (virtual[ids] != pred)
        # lexicographic: disagreement first, then the smallest flipping perturbation
        score = disagree.astype(np.float64) + 1.0 / (1.0 + dist)
        query = top_k(score, ids, view.budget, view.rng)
        cand = pseudo_candidates(view, query)
        keep = certainty[cand] > 0
        return Selection(query=query, pseudo_ids=cand[keep], pseudo_labels=virtual[cand[keep]],
                         pseudo_weights=certainty[cand[keep]])
