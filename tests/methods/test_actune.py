"""ACTUNE: each equation of section 2 on a hand-computed case, then the method and the loop."""
import json
import math

import numpy as np
import pytest
import torch

from benchmark.config import resolve
from benchmark.loop import run_experiment
from methods import get_method
from methods.actune import (ACTune, ThresholdedSelfTraining, class_entropy, confidence_mask,
                            rank_regions, region_query, region_scores, self_training_set)
from methods.base import Method, Selection, TrainBatch, UncertaintyMethod, entropy
from methods.memory_bank import MemoryBank, momentum
from methods.registry import METHODS
from methods.weighted_kmeans import assign_points, kmeans_pp, weighted_centroids, weighted_kmeans

LN2 = math.log(2)


# ---------------------------------------------------------------------------------------------
# Eq. 3-4: weighted K-means
# ---------------------------------------------------------------------------------------------

def test_eq4_centroid_is_the_uncertainty_weighted_mean():
    x = torch.tensor([[0., 0.], [2., 0.], [0., 4.], [10., 10.]], dtype=torch.float64)
    w = torch.tensor([1., 1., 2., 3.], dtype=torch.float64)
    assign = torch.tensor([0, 0, 0, 1])
    old = torch.zeros(3, 2, dtype=torch.float64)
    mu = weighted_centroids(x, w, assign, old)
    # cluster 0: (1*(0,0) + 1*(2,0) + 2*(0,4)) / 4 = (0.5, 2.0); the plain mean is (2/3, 4/3)
    assert torch.allclose(mu[0], torch.tensor([0.5, 2.0], dtype=torch.float64))
    assert torch.allclose(mu[1], torch.tensor([10., 10.], dtype=torch.float64))
    assert torch.equal(mu[2], old[2])  # empty cluster keeps its centre


def test_eq4_zero_weight_cluster_takes_its_plain_mean():
    x = torch.tensor([[0., 0.], [2., 2.]], dtype=torch.float64)
    mu = weighted_centroids(x, torch.zeros(2, dtype=torch.float64), torch.tensor([0, 0]),
                            torch.full((1, 2), 7., dtype=torch.float64))
    assert torch.allclose(mu[0], torch.tensor([1., 1.], dtype=torch.float64))


def test_weighted_kmeans_converges_to_a_fixed_point_of_eq3_and_eq4():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(30, 3, generator=g), torch.randn(30, 3, generator=g) + 6])
    w = torch.rand(60, generator=g) + 0.1
    c = weighted_kmeans(x, w, 2, np.random.default_rng(0))
    assert c.converged
    assert sorted(torch.bincount(c.assign).tolist()) == [30, 30]   # the two blobs
    x64, w64 = x.double(), w.double()
    for k in range(2):
        m = c.assign == k
        expect = (w64[m, None] * x64[m]).sum(0) / w64[m].sum()          # Eq. 4
        assert torch.allclose(c.centres[k], expect)
    assert torch.equal(torch.cdist(x64, c.centres).argmin(1), c.assign)  # Eq. 3


def test_weighting_pulls_the_centroid_towards_uncertain_points():
    x = torch.tensor([[0.], [1.], [2.], [3.]])
    plain = weighted_kmeans(x, None, 1, np.random.default_rng(0)).centres[0, 0]
    heavy = weighted_kmeans(x, torch.tensor([0., 0., 0., 1.]), 1,
                            np.random.default_rng(0)).centres[0, 0]
    assert plain == pytest.approx(1.5) and heavy == pytest.approx(3.0)


def test_kmeans_pp_seeds_are_distinct_and_never_weightless():
    x = torch.tensor([[0.], [0.], [1.], [5.], [9.]])
    w = torch.tensor([1., 1., 1., 0., 1.])
    for seed in range(20):
        s = kmeans_pp(x, w, 10, np.random.default_rng(seed)).tolist()
        assert 3 not in s                                   # zero weight: never a seed
        assert len({float(x[i]) for i in s}) == len(s) == 3  # duplicates of 0 count once


def test_weighted_kmeans_is_deterministic_under_the_seed():
    g = torch.Generator().manual_seed(1)
    x, w = torch.randn(80, 4, generator=g), torch.rand(80, generator=g)
    threads = torch.get_num_threads()
    a = weighted_kmeans(x, w, 6, np.random.default_rng(5))
    b = weighted_kmeans(x, w, 6, np.random.default_rng(5))
    assert torch.equal(a.assign, b.assign) and torch.equal(a.centres, b.centres)
    assert torch.get_num_threads() == threads     # runs on one CPU thread, then gives them back


def test_matmul_assignment_is_the_nearest_centre_and_tol_only_trims_the_tail():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3000, 8, generator=g, dtype=torch.float64)
    c = torch.randn(7, 8, generator=g, dtype=torch.float64)
    assert torch.equal(assign_points(x, c), torch.cdist(x, c).argmin(1))
    w = torch.rand(3000, generator=g)
    exact = weighted_kmeans(x, w, 7, np.random.default_rng(0), tol=0.0)
    assert exact.converged
    assert torch.equal(assign_points(x, weighted_centroids(x, w.double(), exact.assign,
                                                           exact.centres)), exact.assign)
    # below 1 / tol points the default tolerance is the exact fixed point; above, it may stop
    # earlier with at most floor(tol * n) points still moving
    assert torch.equal(weighted_kmeans(x, w, 7, np.random.default_rng(0)).assign, exact.assign)
    loose = weighted_kmeans(x, w, 7, np.random.default_rng(0), tol=0.01)
    assert loose.converged and loose.iterations < exact.iterations
    assert torch.equal(assign_points(x, loose.centres), loose.assign)   # Eq. 3 still holds


def test_negative_uncertainty_is_refused():
    with pytest.raises(ValueError, match="non-negative"):
        weighted_kmeans(torch.zeros(3, 2), torch.tensor([1., -1., 0.]), 2,
                        np.random.default_rng(0))


# Float32 distances, float64 answers (the speed-ups must not change the clustering)

def _reference_lloyd(x, w, seeds):
    """Textbook weighted Lloyd in float64, from given seeds until no point moves: cdist argmin
    (Eq. 3), weighted means (Eq. 4; plain mean for a weightless cluster, empty keeps its centre)."""
    x, w = x.double(), w.double()
    centres = x[seeds].clone()
    assign = torch.cdist(x, centres).argmin(1)
    for it in range(1, 200):
        for k in range(len(centres)):
            m = assign == k
            if m.any():
                centres[k] = (w[m, None] * x[m]).sum(0) / w[m].sum() if w[m].sum() > 0 \
                    else x[m].mean(0)
        new = torch.cdist(x, centres).argmin(1)
        if torch.equal(new, assign):
            return assign, centres, it
        assign = new
    raise AssertionError("no fixed point")


def _blobs(n=3000, d=24, k=8, offset=0.0, seed=3):
    """k Gaussian blobs; with ``offset``, the odd ones shifted by +offset and the even ones by
    -offset along one axis: far from the pool's mean, so even its centred norms are large."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(k, d, generator=g) * 1.5
    blob = torch.randint(k, (n,), generator=g)
    x = means[blob] + torch.randn(n, d, generator=g)
    x[:, 0] += offset * (blob % 2 * 2 - 1)
    w = torch.rand(n, generator=g)
    w[: n // 20] = 0                                   # certain points weigh nothing
    return x, w


def test_float32_settles_a_near_tie_that_float32_scores_cannot_see():
    # (1, 0) is sqrt(2) from c0 = (0, 1) and nearer, by 7e-10, to c1 = (0, -1 + 1e-9); float32
    # rounds c1 to (0, -1), and its scores tie
    x = torch.tensor([[1., 0.], [-1., 0.], [0., 3.], [0., -3.]])   # mean 0: centring is a no-op
    c = torch.tensor([[0., 1.], [0., -1 + 1e-9]], dtype=torch.float64)
    exact = torch.cdist(x.double(), c).argmin(1)
    assert exact.tolist() == [1, 1, 0, 1]
    c32 = c.float()
    assert ((c32 * c32).sum(1) - 2 * x @ c32.T).argmin(1).tolist() == [0, 0, 0, 1]
    assert torch.equal(assign_points(x, c), exact)
    assert torch.equal(assign_points(x, c, torch.float64), exact)


def test_float32_path_is_the_float64_clustering_on_random_data():
    # two far-apart groups: float32 scores leave many runner-ups within rounding of the best;
    # those points are settled in float64 and counted
    x, w = _blobs(offset=40.0)
    f32 = weighted_kmeans(x, w, 12, np.random.default_rng(0), tol=0)
    f64 = weighted_kmeans(x, w, 12, np.random.default_rng(0), tol=0, dtype=torch.float64)
    assert f32.converged and f32.iterations == f64.iterations
    assert torch.equal(f32.assign, f64.assign) and torch.equal(f32.centres, f64.centres)
    assert f32.near_ties > 0 and f64.near_ties == 0


def test_fast_lloyd_equals_the_textbook_one_from_the_same_seeds():
    # Elkan's bounds skip points and the centroid sums are updated incrementally: neither may
    # change a step. Seeds from kmeans_pp with the same generator state as weighted_kmeans.
    x, w = _blobs()
    seeds = kmeans_pp(x, w, 10, np.random.default_rng(7))
    fast = weighted_kmeans(x, w, 10, np.random.default_rng(7), tol=0)
    assign, centres, iterations = _reference_lloyd(x, w, seeds)
    assert torch.equal(fast.assign, assign) and fast.iterations == iterations
    assert torch.allclose(fast.centres, centres, rtol=1e-12, atol=1e-12)


def test_lloyd_steps_never_increase_the_weighted_objective():
    x, w = _blobs(n=1500, d=8, k=5, seed=5)
    x64, w64 = x.double(), w.double()
    objective = []
    for t in range(1, 40):
        c = weighted_kmeans(x, w, 9, np.random.default_rng(1), max_iter=t, tol=0)
        objective.append(float((w64 * ((x64 - c.centres[c.assign]) ** 2).sum(1)).sum()))
        if c.converged:
            break
    assert c.converged and len(objective) > 3
    assert all(b <= a * (1 + 1e-12) for a, b in zip(objective, objective[1:]))
    assert objective[-1] < objective[0]


def test_sampled_fit_leaves_small_pools_alone_and_fits_large_ones_on_the_sample():
    g = torch.Generator().manual_seed(3)
    x = torch.cat([torch.randn(300, 8, generator=g) + 20 * torch.eye(8)[c] for c in range(4)])
    w = torch.rand(len(x), generator=g) + 0.1
    plain = weighted_kmeans(x, w, 4, np.random.default_rng(0))
    # a pool no larger than the sample: the very same clustering (no extra random draw)
    same = weighted_kmeans(x, w, 4, np.random.default_rng(0), sample=len(x))
    assert torch.equal(same.assign, plain.assign) and torch.equal(same.centres, plain.centres)
    # larger: the centroids are the fit on a seeded sample, then every point takes its nearest
    rng = np.random.default_rng(0)
    part = np.sort(rng.choice(len(x), size=200, replace=False))
    on_sample = weighted_kmeans(x[part], w[part], 4, rng)
    sampled = weighted_kmeans(x, w, 4, np.random.default_rng(0), sample=200)
    assert torch.equal(sampled.centres, on_sample.centres)
    assert torch.equal(sampled.assign, assign_points(x, sampled.centres, torch.float64))
    # four separated blobs: 200 points find the same partition as all 1,200 (up to naming)
    pairs = set(zip(plain.assign.tolist(), sampled.assign.tolist()))
    assert len(pairs) == 4


def test_centroid_sums_are_float64_where_float32_would_lose_the_mean():
    g = torch.Generator().manual_seed(0)
    x = 1e4 + torch.randn(20000, 4, generator=g)     # float32 features far from the origin
    w = torch.rand(20000, generator=g)
    exact = (w.double()[:, None] * x.double()).sum(0) / w.double().sum()
    mu = weighted_centroids(x, w, torch.zeros(20000, dtype=torch.long),
                            torch.zeros(1, 4, dtype=torch.float64))
    assert torch.allclose(mu[0], exact, rtol=0, atol=1e-9)
    in_float32 = (w[:, None] * x).sum(0) / w.sum()
    assert (in_float32.double() - exact).abs().max() > 1e-4   # what float32 sums would give


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_weighted_kmeans_on_cuda_is_the_cpu_clustering():
    x, w = _blobs(offset=40.0)
    cpu = weighted_kmeans(x, w, 12, np.random.default_rng(0))
    gpu = weighted_kmeans(x, w, 12, np.random.default_rng(0), device="cuda")
    assert gpu.assign.is_cuda and torch.equal(gpu.assign.cpu(), cpu.assign)
    assert torch.allclose(gpu.centres.cpu(), cpu.centres, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Eq. 5-7: region scores
# ---------------------------------------------------------------------------------------------

def test_eq5_balanced_two_class_cluster_scores_beta_ln2_above_its_mean_uncertainty():
    a = torch.tensor([0.2, 0.4, 0.6, 0.8, 0.1, 0.3])
    assign = torch.tensor([0, 0, 0, 0, 1, 1])
    pseudo = torch.tensor([0, 1, 0, 1, 2, 2])          # cluster 0 balanced, cluster 1 pure
    u = region_scores(assign, a, pseudo, 3, 3, beta=0.5)
    assert u[0].item() == pytest.approx(0.5 + 0.5 * LN2)
    assert u[1].item() == pytest.approx(0.2)           # pure: entropy 0, just the mean
    assert math.isnan(u[2].item())                     # empty cluster


def test_eq7_divides_by_cluster_size_not_by_the_largest_count():
    assign = torch.zeros(4, dtype=torch.long)
    balanced = class_entropy(assign, torch.tensor([0, 1, 0, 1]), 1, 2)
    skewed = class_entropy(assign, torch.tensor([0, 0, 0, 1]), 1, 2)
    assert balanced.item() == pytest.approx(LN2)
    assert skewed.item() == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    # The official code's normalisation, counts / max count, scores the balanced cluster 0 (as
    # if it held a single class) and a skewed one above it: the opposite of Eq. 7's intent.
    def official(counts):
        f = counts / counts.max()
        return float(-(f[f > 0] * torch.log(f[f > 0])).sum())
    assert official(torch.tensor([2., 2.])) == 0.0
    assert official(torch.tensor([3., 1.])) > official(torch.tensor([2., 2.]))
    assert balanced > skewed


def test_regions_rank_by_score_and_skip_empty_ones():
    u = torch.tensor([0.3, float("nan"), 0.9, 0.1])
    rng = np.random.default_rng(0)
    assert rank_regions(u, rng, True).tolist() == [2, 0, 3]
    assert rank_regions(u, rng, False).tolist() == [3, 0, 2]


# ---------------------------------------------------------------------------------------------
# Eq. 8: the query, with footnote 2's overflow
# ---------------------------------------------------------------------------------------------

# ids 100..111 in four regions of sizes 5, 1, 4, 2; within a region, uncertainty falls with id
IDS = np.arange(100, 112)
ASSIGN = np.array([0, 0, 0, 0, 0, 1, 2, 2, 2, 2, 3, 3])
SCORES = np.array([.9, .8, .7, .6, .5, .95, .4, .3, .2, .1, .05, .01])
ORDER = np.array([0, 1, 2, 3])


def _query(b, m):
    return region_query(torch.as_tensor(ASSIGN), torch.as_tensor(SCORES), IDS, ORDER, b, m,
                        np.random.default_rng(0))


def test_eq8_takes_floor_b_over_m_most_uncertain_from_each_top_region():
    q = _query(6, 3)   # 2 from each of the 3 best regions; region 1 holds 1, its shortfall of 1
    # moves to region 2, which gives 3
    assert sorted(q.tolist()) == [100, 101, 105, 106, 107, 108]


def test_eq8_remainder_goes_to_the_best_regions_and_shortfall_carries_past_m():
    q = _query(7, 3)   # shares 3, 2, 2: region 0 -> 3, region 1 -> 1 (short 1), region 2 -> 3
    assert sorted(q.tolist()) == [100, 101, 102, 105, 106, 107, 108]
    q = _query(9, 3)   # 3, 3 (holds 1: short 2), 3 + 2 = 5 (holds 4: short 1) -> region 3 gives 1
    assert sorted(q.tolist()) == [100, 101, 102, 105, 106, 107, 108, 109, 110]
    for b in range(1, 13):
        for m in range(1, 6):
            q = _query(b, m)
            assert len(q) == b and len(set(q.tolist())) == b and set(q) <= set(IDS)


def test_eq8_budget_smaller_than_m():
    assert sorted(_query(2, 3).tolist()) == [100, 105]


# ---------------------------------------------------------------------------------------------
# Eq. 9: the self-training set
# ---------------------------------------------------------------------------------------------

def test_eq9_k_least_uncertain_from_the_m_lowest_regions():
    order = np.array([3, 2, 1, 0])   # lowest u first
    s = self_training_set(torch.as_tensor(ASSIGN), torch.as_tensor(SCORES), IDS, order, 2, 3,
                          np.random.default_rng(0))
    assert sorted(s.tolist()) == [109, 110, 111]    # regions 3 and 2, three least uncertain
    s = self_training_set(torch.as_tensor(ASSIGN), torch.as_tensor(SCORES), IDS, order, 2, 100,
                          np.random.default_rng(0), exclude=np.array([111]))
    assert sorted(s.tolist()) == [106, 107, 108, 109, 110]   # clipped to what they hold


# ---------------------------------------------------------------------------------------------
# Eq. 10 and 12: the momentum memory bank
# ---------------------------------------------------------------------------------------------

def test_momentum_schedule_goes_linearly_from_m_low_to_m_high():
    assert momentum(0, 10, 0.7, 0.9) == pytest.approx(0.7)
    assert momentum(5, 10, 0.7, 0.9) == pytest.approx(0.8)
    assert momentum(10, 10, 0.7, 0.9) == pytest.approx(0.9)
    with pytest.raises(ValueError):
        momentum(1, 10, 0.9, 0.7)


def test_eq10_probability_bank_hand_computed():
    bank = MemoryBank()
    f0 = torch.tensor([[0.65, 0.35], [0.2, 0.8]])
    f1 = torch.tensor([[0.05, 0.95], [0.3, 0.7]])
    g = bank.update(np.array([0, 1]), f0, momentum(0, 10, 0.6, 0.8), 0, 3)
    assert g.dtype == torch.float32 and torch.equal(g[:2], f0)        # initialised with f_0
    m1 = momentum(1, 10, 0.6, 0.8)                                   # 0.62
    g = bank.update(np.array([0, 1]), f1, m1, 1, 3)
    assert torch.allclose(g[0], torch.tensor([0.62 * 0.05 + 0.38 * 0.65,
                                              0.62 * 0.95 + 0.38 * 0.35]))
    # the paper's example: confident now, contradicting the last round -> uncertain in the bank
    assert entropy(g[:1]) > entropy(f1[:1])
    g = bank.update(np.array([2]), torch.tensor([[0.9, 0.1]]), 0.7, 2, 3)
    assert torch.allclose(g[2], torch.tensor([0.9, 0.1]))                    # first seen


def test_eq12_value_bank_and_a_repeated_round_is_not_folded_twice():
    bank = MemoryBank()
    bank.update(np.array([0, 1]), torch.tensor([1.0, 0.2]), 0.8, 0, 2)
    bank.update(np.array([0, 1]), torch.tensor([0.0, 0.4]), 0.8, 1, 2)
    expect = torch.tensor([0.8 * 0.0 + 0.2 * 1.0, 0.8 * 0.4 + 0.2 * 0.2])
    assert torch.allclose(bank.get([0, 1]), expect)
    bank.update(np.array([0, 1]), torch.tensor([0.0, 0.4]), 0.8, 1, 2)   # same round again
    assert torch.allclose(bank.get([0, 1]), expect)
    copy = MemoryBank()
    copy.load_state_dict(bank.state_dict())
    a = bank.update(np.array([0, 1]), torch.tensor([0.5, 0.5]), 0.9, 2, 2).clone()
    b = copy.update(np.array([0, 1]), torch.tensor([0.5, 0.5]), 0.9, 2, 2)
    assert torch.equal(a, b)
    with pytest.raises(ValueError):
        bank.update(np.array([0]), torch.tensor([0.1]), 0.9, 1, 2)     # going back in time


# ---------------------------------------------------------------------------------------------
# Eq. 14: the thresholded self-training loss
# ---------------------------------------------------------------------------------------------

def _batch(logits_u, y_u):
    logits_l = torch.tensor([[1.0, -1.0], [0.0, 0.5]], requires_grad=True)
    return TrainBatch(step=1, total_steps=1, logits_l=logits_l, features_l=torch.zeros(2, 1),
                      y_l=torch.tensor([0, 1]), w_l=torch.ones(2), logits_u=logits_u,
                      y_u=y_u, w_u=torch.ones(len(y_u)))


def test_eq14_masks_each_pseudo_label_by_its_own_confidence():
    logits_u = torch.tensor([[2.0, 0.0], [0.0, 2.0], [0.1, 0.0], [0.0, 3.0]], requires_grad=True)
    y_u = torch.tensor([0, 0, 0, 1])
    # p(y~): 0.881 > 0.6, 0.119, 0.525, 0.953 > 0.6  ->  mask 1, 0, 0, 1
    assert confidence_mask(logits_u, y_u, 0.6).tolist() == [1.0, 0.0, 0.0, 1.0]
    batch = _batch(logits_u, y_u)
    loss = ThresholdedSelfTraining(lam=0.5, gamma=0.6)(batch)
    ce_l = torch.nn.functional.cross_entropy(batch.logits_l, batch.y_l, reduction="none")
    ce_u = torch.nn.functional.cross_entropy(logits_u, y_u, reduction="none")
    expect = ce_l.mean() + 0.5 * (ce_u[0] + ce_u[3]) / 4      # Eq. 14: 1/|S| sum w_i CE_i
    assert loss.item() == pytest.approx(expect.item(), rel=1e-6)
    # The official code's (B,) mask against a (B, 1) loss broadcasts to B x B: every sample's
    # loss is scaled by the fraction passing, confident or not.
    mask = torch.tensor([1.0, 0.0, 0.0, 1.0])
    accident = ce_l.mean() + 0.5 * (mask[None, :] * ce_u[:, None]).mean()
    assert accident.item() == pytest.approx((ce_l.mean() + 0.5 * 0.5 * ce_u.mean()).item())
    assert abs(loss.item() - accident.item()) > 1e-3
    loss.backward()
    grad = logits_u.grad
    assert torch.all(grad[1] == 0) and torch.all(grad[2] == 0)   # masked out: no gradient
    assert grad[0].abs().sum() > 0 and grad[3].abs().sum() > 0


def test_eq14_soft_targets_use_their_argmax_and_no_pseudo_batch_is_plain_ce():
    logits_u = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    soft = torch.tensor([[0.9, 0.1], [0.8, 0.2]])
    assert confidence_mask(logits_u, soft, 0.6).tolist() == [1.0, 0.0]
    batch = _batch(None, torch.zeros(0, dtype=torch.long))
    batch.logits_u = batch.y_u = batch.w_u = None
    ce_l = torch.nn.functional.cross_entropy(batch.logits_l, batch.y_l)
    assert ThresholdedSelfTraining(1.0, 0.6)(batch).item() == pytest.approx(ce_l.item())
    obj = ACTune(lam=0.3, gamma=0.7).objective(1, 10)
    assert isinstance(obj, ThresholdedSelfTraining) and (obj.lam, obj.gamma) == (0.3, 0.7)


def test_eq14_teacher_mask_reads_the_memory_bank_and_both_report_their_pass_rate(make_view):
    """mask_source=teacher (the official code): omega from the bank's probability of each
    pseudo-label, fixed for the round; student (the paper's text): from the model in training."""
    m = ACTune(memory_bank="prob", n_clusters=1, n_regions=1, st_growth=1, m_low=0.8,
               m_high=0.8, gamma=0.89, mask_source="teacher")
    for view in _flip_views(make_view):
        sel = m.select(view)
    assert sorted(sel.pseudo_ids.tolist()) == [1, 2] and sel.pseudo_labels.tolist() == [1, 1]
    # bank after rounds 0 and 1: point 1 is [.1 .9] both times -> g = .9 > .89: passes;
    # point 2 is [.12 .88] -> .88: fails, whatever the student says
    logits_u = torch.tensor([[2.0, 0.0], [0.0, 3.0]])      # student: p(1) = .119 and .953
    y_u = torch.tensor([1, 1])

    def batch():
        b = _batch(logits_u, y_u)
        b.ids_u = torch.tensor([1, 2])
        return b
    ce_l = torch.nn.functional.cross_entropy(batch().logits_l, batch().y_l, reduction="none")
    ce_u = torch.nn.functional.cross_entropy(logits_u, y_u, reduction="none")
    teacher = m.objective(2, 10)
    teacher.start(None)
    assert teacher(batch()).item() == pytest.approx((ce_l.mean() + ce_u[0] / 2).item(), rel=1e-6)
    student = ACTune(gamma=0.89).objective(2, 10)
    student.start(None)
    assert student(batch()).item() == pytest.approx((ce_l.mean() + ce_u[1] / 2).item(), rel=1e-6)
    # diagnostics: share of pseudo-labelled samples whose omega passed, over all steps
    b = batch()
    b.ids_u, b.logits_u = torch.tensor([2, 2]), torch.tensor([[0.0, 3.0], [0.0, 3.0]])
    teacher(b), student(b)
    assert teacher.diagnostics() == {"omega_pass_rate": 1 / 4}   # 1 of 2, then 0 of 2
    assert student.diagnostics() == {"omega_pass_rate": 3 / 4}   # 1 of 2, then 2 of 2
    assert ThresholdedSelfTraining().diagnostics() == {}          # no pseudo batch, no rate
    # the teacher's confidences survive a resume with the method state
    again = ACTune(mask_source="teacher", gamma=0.89)
    again.load_state_dict(m.state_dict())
    again_obj = again.objective(2, 10)
    assert again_obj(batch()).item() == pytest.approx(teacher(batch()).item())
    with pytest.raises(ValueError, match="mask_source"):
        ACTune(mask_source="bank")


# ---------------------------------------------------------------------------------------------
# The method on hand-made views
# ---------------------------------------------------------------------------------------------

def _pool(n=120, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(4, 6, generator=g) * 5
    feats = centres[torch.arange(n) % 4] + torch.randn(n, 6, generator=g)
    probs = (torch.randn(n, c, generator=g) * 2).softmax(-1)
    return probs, feats


def test_select_honours_the_contract_and_times_its_phases(make_view):
    probs, feats = _pool()
    m = ACTune(n_clusters=8, n_regions=3, st_growth=15)
    view = make_view(probs, feats, labelled_ids=range(10), budget=10, round=2, rounds=5)
    sel = m.select(view)
    q, s = sel.query, sel.pseudo_ids
    assert len(q) == 10 and len(set(q)) == 10 and set(q) <= set(view.unlabelled_ids)
    assert len(s) == len(set(s)) and 0 < len(s) <= 30 and set(s) <= set(view.unlabelled_ids)
    assert not set(q) & set(s)
    g = m.bank.get(s)   # prob bank, first round seen: the current probabilities
    assert np.array_equal(sel.pseudo_labels, g.argmax(-1).numpy())
    assert np.array_equal(sel.pseudo_labels, probs[s].argmax(-1).numpy())
    assert {"uncertainty", "region_sampling", "memory_bank"} <= set(view.timer.seconds)


def test_al_setting_queries_by_region_and_skips_self_training(make_view):
    probs, feats = _pool()
    m = ACTune(n_clusters=8, n_regions=3)
    al = m.select(make_view(probs, feats, budget=10, setting="al", seed=3))
    assert len(al.pseudo_ids) == 0 and m.bank.values is None
    ssal = ACTune(n_clusters=8, n_regions=3).select(
        make_view(probs, feats, budget=10, setting="ssal", seed=3))
    assert np.array_equal(al.query, ssal.query)   # the same region-aware queries


def test_same_seed_same_selection(make_view):
    probs, feats = _pool()
    a = ACTune(n_clusters=8, n_regions=3).select(make_view(probs, feats, budget=12, seed=7))
    b = ACTune(n_clusters=8, n_regions=3).select(make_view(probs, feats, budget=12, seed=7))
    assert np.array_equal(a.query, b.query) and np.array_equal(a.pseudo_ids, b.pseudo_ids)
    assert np.array_equal(a.pseudo_labels, b.pseudo_labels)


def test_region_sampling_spreads_queries_that_plain_uncertainty_would_bunch(make_view):
    # two far-apart groups; every point of group A is more uncertain than any of group B
    feats = torch.cat([torch.randn(20, 2) * 0.1, torch.randn(20, 2) * 0.1 + 50])
    conf = torch.cat([torch.linspace(0.40, 0.50, 20), torch.linspace(0.6, 0.7, 20)])
    probs = torch.stack([conf, 1 - conf], 1)
    view = lambda: make_view(probs, feats, budget=6, setting="al")
    rs = ACTune(n_clusters=2, n_regions=2).select(view()).query
    no_rs = get_method("actune-no-rs")(n_clusters=2, n_regions=2).select(view()).query
    assert sum(q < 20 for q in rs) == 3 and sum(q >= 20 for q in rs) == 3
    assert all(q < 20 for q in no_rs)
    assert set(no_rs) == set(np.argsort(-entropy(probs).numpy())[:6])


def _flip_views(make_view):
    """Point 0 flips from class 0 to a confident class 1; points 1-4 are steady; 5 is a coin."""
    f0 = torch.tensor([[.9, .1], [.1, .9], [.12, .88], [.15, .85], [.2, .8], [.5, .5]])
    f1 = f0.clone()
    f1[0] = torch.tensor([.02, .98])
    feats = torch.zeros(6, 2)
    return [make_view(f, feats, budget=1, round=r, rounds=10, seed=r)
            for r, f in ((1, f0), (2, f1))]


@pytest.mark.parametrize("bank, expect_ids", [("none", [0, 1]), ("prob", [1, 2])])
def test_eq11_memory_bank_keeps_a_flip_flopping_point_out(make_view, bank, expect_ids):
    m = ACTune(memory_bank=bank, n_clusters=1, n_regions=1, st_growth=1, m_low=0.8, m_high=0.8)
    for view in _flip_views(make_view):
        sel = m.select(view)
        assert sel.query.tolist() == [5]
    # round 2: k = 2; with the bank, g_0 = 0.8 [.02 .98] + 0.2 [.9 .1] = [.196 .804] is now
    # less certain than points 1 and 2
    assert sorted(sel.pseudo_ids.tolist()) == expect_ids
    assert sel.pseudo_labels.tolist() == [1, 1]


def test_eq13_value_bank_averages_uncertainty_and_labels_from_the_current_model(make_view):
    m = ACTune(memory_bank="value", n_clusters=1, n_regions=1, st_growth=1, m_low=0.8,
               m_high=0.8)
    views = _flip_views(make_view)
    for view in views:
        sel = m.select(view)
    h0, h1 = entropy(views[0].probs), entropy(views[1].probs)
    expect = 0.8 * h1[:5] + 0.2 * h0[:5]
    assert torch.allclose(m.bank.get(np.arange(5)).float(), expect)
    assert sorted(sel.pseudo_ids.tolist()) == [0, 1]    # 0.8*0.098 + 0.2*0.325 < 0.325
    assert sel.pseudo_labels.tolist() == [1, 1]


def test_any_registered_uncertainty_score_plugs_in(make_view, monkeypatch):
    class LeastConfidence(UncertaintyMethod):
        def scores(self, view, ids):
            return 1 - view.probs[ids].max(-1).values
    monkeypatch.setitem(METHODS._items, "lc-test", LeastConfidence)
    probs = torch.tensor([[.9, .05, .05], [.5, .25, .25], [.45, .45, .1], [.8, .1, .1]])
    # least confidence 1 - max p: .50 vs .55 -> point 2; entropy: 1.040 vs 0.949 -> point 1
    lc = ACTune(uncertainty="lc-test", n_clusters=1, n_regions=1)
    ent = ACTune(uncertainty="entropy", n_clusters=1, n_regions=1)
    assert lc.select(make_view(probs, budget=1, setting="al")).query.tolist() == [2]
    assert ent.select(make_view(probs, budget=1, setting="al")).query.tolist() == [1]
    with pytest.raises(ValueError, match="not an uncertainty score"):
        ACTune(uncertainty="random")


def test_plug_in_query_method_chooses_queries_and_actune_the_pseudo_labels(make_view,
                                                                           monkeypatch):
    class LowestIds(Method):
        def select(self, view):
            return Selection(query=np.sort(view.unlabelled_ids)[:view.budget])
    monkeypatch.setitem(METHODS._items, "lowest-test", LowestIds)
    probs, feats = _pool()
    m = ACTune(query_method="lowest-test", n_clusters=8, n_regions=3, st_growth=20)
    sel = m.select(make_view(probs, feats, labelled_ids=[0, 1], budget=5))
    assert sel.query.tolist() == [2, 3, 4, 5, 6]
    assert 0 < len(sel.pseudo_ids) <= 20 and not set(sel.pseudo_ids) & set(sel.query)
    assert get_method("actune-badge")().hp["query_method"] == "badge"


def test_no_wclus_clusters_without_weights(make_view, monkeypatch):
    import methods.actune as actune
    seen = []
    real = actune.weighted_kmeans
    monkeypatch.setattr(actune, "weighted_kmeans",
                        lambda x, w, *a, **kw: seen.append(w) or real(x, w, *a, **kw))
    probs, feats = _pool()
    get_method("actune-no-wclus")(n_clusters=4, n_regions=2).select(make_view(probs, feats))
    ACTune(n_clusters=4, n_regions=2).select(make_view(probs, feats))
    assert seen[0] is None
    assert torch.allclose(seen[1].float(), entropy(probs))   # a(x) of the pool


def test_variants_change_only_defaults():
    base = ACTune.params
    for name, change in (("actune-cal", dict(uncertainty="cal", memory_bank="value")),
                         ("actune-value", dict(memory_bank="value")),
                         ("actune-no-rs", dict(region_sampling=False)),
                         ("actune-no-mmb", dict(memory_bank="none")),
                         ("actune-no-wclus", dict(weighted_clustering=False)),
                         ("actune-badge", dict(query_method="badge")),
                         ("actune-alps", dict(query_method="alps"))):
        cls = get_method(name)
        assert issubclass(cls, ACTune) and cls.params == {**base, **change}
        assert cls.dataset_params["trec"]["n_clusters"] == 40


def test_table2_defaults_reach_the_config():
    cfg = resolve("actune", "trec", 0, "ssal", "smoke")
    p = cfg["params"]
    assert (p["n_clusters"], p["n_regions"], p["gamma"], p["m_low"], p["m_high"],
            p["st_growth"], p["beta"], p["lam"]) == (40, 10, 0.6, 0.8, 0.9, 500, 0.5, 1.0)
    p = resolve("actune", "sst2", 0, "ssal", "smoke", {"st_growth": 50})["params"]
    assert (p["n_clusters"], p["n_regions"], p["st_growth"]) == (25, 5, 50)


# ---------------------------------------------------------------------------------------------
# End to end through the round loop (tiny backbone)
# ---------------------------------------------------------------------------------------------

SMALL = {"n_clusters": 6, "n_regions": 2, "st_growth": 10}


def test_actune_runs_end_to_end_in_ssal(toy_data, tiny_overrides, tmp_path):
    cfg = resolve("actune", str(toy_data), 0, "ssal", "smoke", {**tiny_overrides, **SMALL})
    records = run_experiment(cfg, tmp_path / "out", log=lambda *_: None)
    assert [r["n_labels"] for r in records] == [12, 20, 28]
    for r in records[1:]:
        assert 0 < r["n_pseudo"] <= 10 * r["round"]
        assert 0 <= r["pseudo_acc"] <= 1
        assert {"region_sampling", "memory_bank", "query"} <= set(r["time"])
        assert 0 <= r["train"]["omega_pass_rate"] <= 1      # Eq. 14's mask, measured
        assert r["time"]["region_sampling"] + r["time"]["memory_bank"] <= r["time"]["query"]
    al = run_experiment(resolve("actune", str(toy_data), 0, "al", "smoke",
                                {**tiny_overrides, **SMALL}), tmp_path / "al",
                        log=lambda *_: None)
    assert all(r["n_pseudo"] == 0 and "memory_bank" not in r["time"] for r in al)


def test_killed_actune_run_resumes_with_its_memory_bank(toy_data, tiny_overrides, tmp_path,
        stop_after_round):
    over = {**tiny_overrides, **SMALL, "rounds": 3}
    cfg = resolve("actune", str(toy_data), 2, "ssal", "smoke", over)
    whole = run_experiment(cfg, tmp_path / "whole", log=lambda *_: None)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, tmp_path / "cut", log=stop_after_round(1))
    resumed = run_experiment(cfg, tmp_path / "cut", log=lambda *_: None)

    def strip(rs):
        return [{k: v for k, v in r.items() if k not in ("time", "train")} for r in rs]
    assert json.dumps(strip(resumed)) == json.dumps(strip(whole))
