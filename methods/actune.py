"""ACTUNE (Yu et al., NAACL 2022): uncertainty-based active self-training.

Each round the pool's uncertainty a(x) splits the work: high-uncertainty points are queried for
labels, low-uncertainty points are pseudo-labelled for self-training (paper section 2).

1. Weighted K-means (Eq. 3-4) on the penultimate features of the unlabelled pool, each point
   weighted by a(x) (``methods.weighted_kmeans``).
2. Region score u_k = mean a(x) in cluster k + beta * I_k (Eq. 5-7), I_k the Shannon entropy of
   the predicted-class frequencies count_j / |C_k| in the cluster: a cluster whose predictions
   disagree lies near the decision boundary. (The official code divides the counts by the
   largest count, which scores a perfectly balanced cluster 0; not reproduced here.)
3. Query (Eq. 8): the M highest-scoring regions give their floor(b/M) most uncertain points each;
   a region short of its share gives all it has and the shortfall moves to the next region
   (footnote 2). So that exactly b points are queried, the b - M*floor(b/M) left over go one
   each to the best-ranked regions, and a shortfall left after the M-th region moves on down
   the ranking (and, past the last region, back to the top).
4. Self-training set (Eq. 9): from the M lowest-scoring regions, the k least uncertain points,
   with k growing by ``st_growth`` every round (k_t = t * st_growth, clipped to what those
   regions hold). Uncertainty and pseudo-labels come from the momentum memory bank
   (``methods.memory_bank``): probability-based (Eq. 10-11) re-computes a(x) and the argmax on
   the averaged probabilities; value-based (Eq. 12-13) averages a(x) itself and takes
   pseudo-labels from the current prediction.
5. Loss (Eq. 14, :class:`ThresholdedSelfTraining`): labelled CE + lambda * mean over the
   pseudo-labelled batch of omega * CE, omega = 1[p(y~ | x) > gamma] per sample. The paper's
   text takes p from the model being trained (``mask_source="student"``, the default); the
   official code takes it from the stored prediction the pseudo-label came from
   (``mask_source="teacher"``: here the memory bank's probability of y~, or the selecting
   model's under the value bank and without one), fixed for the round (the official code also
   scales each loss by that confidence; not reproduced). A fresh student starts
   near 1/C < gamma, so the two differ most early in training; the share of pseudo-labelled
   samples that passed is recorded per round (``omega_pass_rate`` in the ``train`` record).

a(x) is any registered :class:`UncertaintyMethod` (``uncertainty=``); another registered method
may choose the queries instead (``query_method=``, paper Fig. 5a) while ACTUNE chooses the
pseudo-labels. Region scores and the query use the current model; only the self-training set
reads the memory bank (Eq. 11 and 13 rewrite Eq. 9 and Eq. 2 for self-training only).
In the ``al`` setting the self-training half is skipped: region-aware querying alone.
"""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch

from .base import (Method, Objective, RoundView, Selection, TrainBatch, UncertaintyMethod,
                   cross_entropy, top_k)
from .memory_bank import MemoryBank, momentum
from .registry import get_method, register
from .weighted_kmeans import weighted_kmeans

BANKS = ("prob", "value", "none")
MASK_SOURCES = ("student", "teacher")

# Paper Table 2 and section 3.1. Table 2's rows labelled "M" (25-40) and "K" (5, 10) are swapped
# relative to the text and Fig. 4(b): K is the number of clusters, M the number of regions
# sampled. Its two-valued rows (M: 5 | 10, gamma: 0.7 | 0.6) are read as merged cells over the
# same three-and-three split as the cluster counts (25/30/30 | 40/40/40).
TABLE2 = {
    "sst2":     dict(n_clusters=25, n_regions=5, gamma=0.7, m_low=0.8, m_high=0.9, st_growth=3000),
    "agnews":   dict(n_clusters=30, n_regions=5, gamma=0.7, m_low=0.9, m_high=0.9, st_growth=5000),
    "pubmed":   dict(n_clusters=30, n_regions=5, gamma=0.7, m_low=0.7, m_high=0.8, st_growth=3000),
    "dbpedia":  dict(n_clusters=40, n_regions=10, gamma=0.6, m_low=0.8, m_high=0.9, st_growth=5000),
    "trec":     dict(n_clusters=40, n_regions=10, gamma=0.6, m_low=0.8, m_high=0.9, st_growth=500),
    "chemprot": dict(n_clusters=40, n_regions=10, gamma=0.6, m_low=0.8, m_high=1.0, st_growth=500),
}


# ----------------------------------------------------------------------------------------------
# Region scores and the two selections (Eq. 5-9)
# ----------------------------------------------------------------------------------------------

def class_entropy(assign: torch.Tensor, pseudo: torch.Tensor, k: int, num_classes: int
                  ) -> torch.Tensor:
    """Eq. 7: I_k = -sum_j f_j ln f_j with f_j = #{i in C_k: y~_i = j} / |C_k|; 0 if empty."""
    counts = torch.zeros(k, num_classes, dtype=torch.float64)
    counts.index_put_((assign.long(), pseudo.long()), torch.ones(len(assign), dtype=torch.float64),
                      accumulate=True)
    f = counts / counts.sum(1, keepdim=True).clamp_min(1)
    return -(f * torch.log(torch.where(f > 0, f, torch.ones_like(f)))).sum(1)


def region_scores(assign: torch.Tensor, uncertainty: torch.Tensor, pseudo: torch.Tensor,
                  k: int, num_classes: int, beta: float) -> torch.Tensor:
    """Eq. 5-6: u_k = mean_{i in C_k} a_i + beta * I_k; NaN for an empty cluster."""
    assign = assign.long()
    size = torch.bincount(assign, minlength=k).to(torch.float64)
    total = torch.zeros(k, dtype=torch.float64).index_add_(0, assign,
                                                           uncertainty.to(torch.float64))
    u = total / size.clamp_min(1) + beta * class_entropy(assign, pseudo, k, num_classes)
    return torch.where(size > 0, u, torch.full_like(u, float("nan")))


def rank_regions(u: torch.Tensor, rng: np.random.Generator, highest_first: bool) -> np.ndarray:
    """Non-empty regions ordered by score (ties broken at random, seeded)."""
    u = np.asarray(u, dtype=np.float64)
    regions = np.flatnonzero(~np.isnan(u))
    s = u[regions] if highest_first else -u[regions]
    return top_k(s, regions, len(regions), rng)


def region_query(assign: torch.Tensor, scores: torch.Tensor, ids: np.ndarray, order: np.ndarray,
                 budget: int, n_regions: int, rng: np.random.Generator) -> np.ndarray:
    """Eq. 8 with footnote 2: exactly ``min(budget, len(ids))`` distinct ids.

    Region r (r-th in ``order``, highest u first) is asked for floor(b/M) points, +1 for the
    first b mod M regions, plus whatever the regions before it could not give; a shortfall
    left after the last region goes back to the top of the ranking (only on tiny pools).
    """
    assign, scores = np.asarray(assign), np.asarray(scores, dtype=np.float64)
    ids = np.asarray(ids)
    budget = min(budget, len(ids))
    n_regions = min(n_regions, len(order))   # fewer non-empty regions than M: use them all
    share, extra = divmod(budget, n_regions)
    picked, carry = [], 0
    for rank, region in enumerate(order):
        want = carry + ((share + (rank < extra)) if rank < n_regions else 0)
        if want == 0:
            if rank >= n_regions:
                break
            continue
        members = np.flatnonzero(assign == region)
        take = top_k(scores[members], ids[members], want, rng)
        picked.append(take)
        carry = want - len(take)
    if carry:  # every region visited and still short: the best-ranked regions give more
        taken = np.isin(ids, np.concatenate(picked))
        for region in order:
            if not carry:
                break
            members = np.flatnonzero((assign == region) & ~taken)
            take = top_k(scores[members], ids[members], carry, rng)
            picked.append(take)
            carry -= len(take)
    out = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
    assert len(out) == budget and len(np.unique(out)) == budget
    return out


def self_training_set(assign: torch.Tensor, scores: torch.Tensor, ids: np.ndarray,
                      order: np.ndarray, n_regions: int, k: int, rng: np.random.Generator,
                      exclude: np.ndarray = ()) -> np.ndarray:
    """Eq. 9: the ``k`` least uncertain ids in the ``n_regions`` first regions of ``order``
    (lowest u first), ``exclude`` (this round's queries) left out; fewer if they hold fewer."""
    assign, scores = np.asarray(assign), np.asarray(scores, dtype=np.float64)
    ids = np.asarray(ids)
    keep = np.isin(assign, order[:n_regions]) & ~np.isin(ids, np.asarray(exclude, dtype=ids.dtype))
    return top_k(-scores[keep], ids[keep], k, rng)


# ----------------------------------------------------------------------------------------------
# Training loss (Eq. 14)
# ----------------------------------------------------------------------------------------------

def confidence_mask(logits: torch.Tensor, target: torch.Tensor, gamma: float) -> torch.Tensor:
    """w_i = 1[p(y~_i | x_i) > gamma] per sample (B,), from the model being trained; no gradient."""
    with torch.no_grad():
        hard = target.argmax(-1) if target.dim() == 2 else target
        p = torch.softmax(logits.float(), -1).gather(1, hard.long()[:, None]).squeeze(1)
        return (p > gamma).float()


class ThresholdedSelfTraining(Objective):
    """Eq. 14: mean CE on the labelled batch + lambda * mean_i w_i CE_i on the pseudo batch.

    The pseudo term is divided by the batch size, not by the number of samples passing the
    threshold (Eq. 14's 1/|S|), so a batch the model is unsure about contributes less.
    ``teacher``: the teacher's probability of each pseudo-label, indexed by pool id (NaN where
    unknown, which never passes); None = the student's mask (the paper's text).
    """

    def __init__(self, lam: float = 1.0, gamma: float = 0.6, teacher: torch.Tensor | None = None):
        super().__init__(lam)
        self.gamma, self.teacher = gamma, teacher
        self._passed, self._seen = torch.zeros(()), 0

    def start(self, model: torch.nn.Module) -> None:
        self._passed, self._seen = torch.zeros(()), 0

    def mask(self, batch: TrainBatch) -> torch.Tensor:
        if self.teacher is None:
            return confidence_mask(batch.logits_u, batch.y_u, self.gamma)
        p = self.teacher[batch.ids_u.long().cpu()]
        return (p > self.gamma).float().to(batch.logits_u.device)

    def pseudo_loss(self, batch: TrainBatch) -> torch.Tensor:
        w = self.mask(batch)
        self._passed = self._passed.to(w.device) + w.sum()   # no host sync per step
        self._seen += len(w)
        if batch.w_u is not None:
            w = w * batch.w_u
        return (w * cross_entropy(batch.logits_u, batch.y_u)).mean()

    def diagnostics(self) -> dict:
        """``omega_pass_rate``: passed / seen pseudo-labelled samples over all the round's steps."""
        if not self._seen:
            return {}
        return {"omega_pass_rate": float(self._passed) / self._seen}


# ----------------------------------------------------------------------------------------------
# The method
# ----------------------------------------------------------------------------------------------

def _view_with_probs(view: RoundView, probs: torch.Tensor) -> RoundView:
    """The round's view with the memory bank's probabilities in place of the model's.

    Its extras cache starts empty (an uncertainty method may cache values derived from the
    probabilities) except for MC-dropout passes, which depend on the model only.
    """
    extras = view.extras
    if extras is not None:
        extras = copy.copy(extras)
        extras._cache = {key: v for key, v in view.extras._cache.items()
                         if isinstance(key, tuple) and key and key[0] == "mc_dropout"}
    return dataclasses.replace(view, probs=probs.float(), extras=extras)


@register("actune")
class ACTune(Method):
    """ACTUNE + Entropy with the probability-based memory bank (the paper's main variant)."""
    family = "ours"
    overhead_phases = ("region_sampling", "memory_bank")   # its own cost on top of a(x)

    params = dict(
        uncertainty="entropy",      # registered UncertaintyMethod giving a(x)
        memory_bank="prob",         # prob (Eq. 10-11) | value (Eq. 12-13) | none (w/o MMB)
        region_sampling=True,       # False: query the top-b uncertain directly (w/o RS)
        weighted_clustering=True,   # False: plain K-means (w/o WClus)
        query_method=None,          # a registered method choosing the queries (Fig. 5a plug-in)
        n_clusters=30,              # K
        n_regions=10,               # M
        beta=0.5,                   # weight of the class entropy in u_k (Eq. 5)
        gamma=0.6,                  # confidence threshold of Eq. 14
        mask_source="student",      # Eq. 14's p: student (paper text) | teacher (official code)
        lam=1.0,                    # lambda of Eq. 14
        m_low=0.8,                  # m_L of Eq. 10
        m_high=0.9,                 # m_H of Eq. 10
        st_growth=500,              # self-training set grows by this many points per round
        kmeans_iters=100,           # cap on Lloyd iterations
        kmeans_sample=20000,        # larger pools: centroids fitted on a seeded sample this size
    )
    dataset_params = TABLE2
    cost = "one inference pass + weighted K-means on the pool"

    def __init__(self, **params):
        super().__init__(**params)
        hp = self.hp
        if hp["memory_bank"] not in BANKS:
            raise ValueError(f"memory_bank must be one of {BANKS}, got {hp['memory_bank']!r}")
        if not issubclass(get_method(hp["uncertainty"]), UncertaintyMethod):
            raise ValueError(f"uncertainty={hp['uncertainty']!r} is not an uncertainty score "
                             "(an UncertaintyMethod)")
        if hp["query_method"] is not None:
            get_method(hp["query_method"])  # fail at start-up on an unknown name
        if hp["n_clusters"] < 1 or hp["n_regions"] < 1:
            raise ValueError("n_clusters and n_regions must be positive")
        if hp["mask_source"] not in MASK_SOURCES:
            raise ValueError(f"mask_source must be one of {MASK_SOURCES}, "
                             f"got {hp['mask_source']!r}")
        self.bank = MemoryBank()
        self.teacher_conf: dict | None = None   # {"ids", "conf"} of the last pseudo-label set
        self._parts: dict = {}
        self._query_state: dict | None = None

    # components, built for the round's dataset (their own per-dataset defaults) ------------
    def _part(self, param: str, dataset: str) -> Method:
        name = self.hp[param]
        if (param, dataset) not in self._parts:
            cls = get_method(name)
            self._parts[(param, dataset)] = cls(**cls.dataset_params.get(dataset, {}))
            if param == "query_method" and self._query_state is not None:
                self._parts[(param, dataset)].load_state_dict(self._query_state)
        return self._parts[(param, dataset)]

    # Eq. 3-9 -----------------------------------------------------------------------------
    def select(self, view: RoundView) -> Selection:
        hp, rng = self.hp, view.rng
        ids = np.asarray(view.unlabelled_ids)
        if len(ids) == 0:
            return Selection(query=ids)
        with view.timer("uncertainty"):
            a = torch.as_tensor(self._part("uncertainty", view.dataset).scores(view, ids),
                                dtype=torch.float64).reshape(-1)
        plug_in = hp["query_method"] is not None
        region_query_on = hp["region_sampling"] and not plug_in
        need_regions = region_query_on or view.allow_pseudo
        assign = u = None
        query = None
        if need_regions:
            with view.timer("region_sampling"):
                k = min(hp["n_clusters"], len(ids))
                weights = a if hp["weighted_clustering"] else None
                assign = weighted_kmeans(view.features[ids], weights, k, rng,
                                         hp["kmeans_iters"], device=view.device,
                                         sample=hp["kmeans_sample"]).assign.cpu()
                pseudo_now = view.probs[ids].argmax(-1)
                u = region_scores(assign, a, pseudo_now, k, view.num_classes, hp["beta"])
                if region_query_on:
                    query = region_query(assign, a, ids, rank_regions(u, rng, True),
                                         view.budget, hp["n_regions"], rng)
        if plug_in:
            query = self._part("query_method", view.dataset).select(view).query
        elif query is None:  # w/o RS
            query = top_k(a, ids, view.budget, rng)
        if not view.allow_pseudo:
            return Selection(query=query)
        with view.timer("memory_bank"):
            st_scores, probs = self._bank_step(view, ids, a)
            size = hp["st_growth"] * view.round
            chosen = self_training_set(assign, st_scores, ids, rank_regions(u, rng, False),
                                       hp["n_regions"], size, rng, exclude=query)
            conf, labels = probs.max(-1)
            label_of = np.zeros(len(view.probs), dtype=np.int64)
            label_of[ids] = labels.numpy()
            conf_of = np.zeros(len(view.probs), dtype=np.float32)
            conf_of[ids] = conf.numpy()
            pseudo = label_of[chosen]
            self.teacher_conf = {"ids": chosen, "conf": conf_of[chosen]}
        return Selection(query=query, pseudo_ids=chosen, pseudo_labels=pseudo)

    def _bank_step(self, view: RoundView, ids: np.ndarray, a: torch.Tensor):
        """Self-training uncertainty for ``ids``, and the probabilities their pseudo-labels (the
        argmax) come from, through the memory bank.

        The view's predictions come from the model of round ``view.round - 1``, which is the
        round whose momentum m_t weighs them in.
        """
        hp = self.hp
        kind = hp["memory_bank"]
        current = view.probs[ids].double()
        if kind == "none":
            return a, current
        t = view.round - 1
        m = momentum(t, view.rounds, hp["m_low"], hp["m_high"])
        n_pool = len(view.probs)
        if kind == "value":   # Eq. 12-13: average a(x); labels from the current model
            g = self.bank.update(ids, a, m, t, n_pool)
            return g[torch.as_tensor(ids)], current
        g = self.bank.update(np.arange(n_pool), view.probs, m, t, n_pool)   # Eq. 10
        smoothed = _view_with_probs(view, g)                                 # Eq. 11
        a_g = self._part("uncertainty", view.dataset).scores(smoothed, ids)
        return torch.as_tensor(a_g, dtype=torch.float64), g[torch.as_tensor(ids)]

    def objective(self, round: int, rounds: int) -> Objective:
        teacher = None
        if self.hp["mask_source"] == "teacher" and self.teacher_conf is not None:
            ids = np.asarray(self.teacher_conf["ids"], dtype=np.int64)
            teacher = torch.full((int(ids.max(initial=-1)) + 1,), float("nan"))
            teacher[torch.as_tensor(ids)] = torch.as_tensor(self.teacher_conf["conf"]).float()
        return ThresholdedSelfTraining(self.hp["lam"], self.hp["gamma"], teacher)

    def state_dict(self) -> dict:
        state = {"bank": self.bank.state_dict(), "teacher_conf": self.teacher_conf}
        queriers = [m for (p, _), m in self._parts.items() if p == "query_method"]
        if queriers:
            state["query_method"] = queriers[0].state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.bank.load_state_dict(state.get("bank", {}))
        self.teacher_conf = state.get("teacher_conf")
        self._query_state = state.get("query_method")

    @classmethod
    def plugin_of(cls, params: dict) -> str | None:
        """Its query method (a Fig. 5a plug-in), else its uncertainty a(x)."""
        return params.get("query_method") or params.get("uncertainty")

    @classmethod
    def al_counterpart(cls, params: dict) -> str | None:
        """Itself: in the AL setting it queries by the same region-aware rule, without the
        self-training (the paper's AL comparison)."""
        return cls.name


# ----------------------------------------------------------------------------------------------
# The paper's variants: registry entries that only change defaults
# ----------------------------------------------------------------------------------------------

def _variant(name: str, family: str, doc: str, **changes):
    cls = type(f"ACTune_{name.replace('-', '_')}", (ACTune,),
               {"__doc__": doc, "params": {**ACTune.params, **changes}, "__module__": __name__,
                "family": family, "variant_of": ACTune.name})
    return register(name)(cls)


_variant("actune-cal", "ours",
         "ACTUNE + CAL with the value-based memory bank (paper B.5).",
         uncertainty="cal", memory_bank="value")
_variant("actune-value", "ablation",
         "ACTUNE + Entropy with the value-based memory bank (Fig. 4d).",
         memory_bank="value")
_variant("actune-no-rs", "ablation",
         "Ablation w/o RS: query the b most uncertain points directly.",
         region_sampling=False)
_variant("actune-no-mmb", "ablation",
         "Ablation w/o MMB: self-train on the current round's predictions.",
         memory_bank="none")
_variant("actune-no-wclus", "ablation",
         "Ablation w/o WClus: plain (unweighted) K-means.",
         weighted_clustering=False)
_variant("actune-badge", "plug-in",
         "Plug-in (Fig. 5a): BADGE queries; Entropy + memory bank pseudo-labels.",
         query_method="badge")
_variant("actune-alps", "plug-in",
         "Plug-in (Fig. 5a): ALPS queries; Entropy + memory bank pseudo-labels.",
         query_method="alps")
