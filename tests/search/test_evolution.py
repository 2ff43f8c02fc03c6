"""Evolutionary search on a small known space: constraints, determinism, predictor screening."""
import random

import numpy as np
import pytest

from salnas_core.search.evolution import (Constraints, EvolutionConfig, EvolutionSearch, config_key, crossover,
                                          mutate)
from salnas_core.search.predictor import (PREDICTORS, create_predictor, encode, held_out_rank_correlation,
                                          online_rank_correlation, spearman)

CHOICES = {"depth": [1, 2, 3, 4], "width": [16, 24, 32, 40], "kernel": [3, 5, 7]}
STAGES = 3


def sample(rng: random.Random) -> dict:
    return {"space": "toy", **{k: [rng.choice(v) for _ in range(STAGES)] for k, v in CHOICES.items()}}


def cost(c: dict) -> dict:
    macs = sum(d * w * k * k for d, w, k in zip(c["depth"], c["width"], c["kernel"])) * 1e3
    return {"macs": macs, "params": macs / 10, "latency_ms": macs / 1e5 + sum(c["depth"])}


def score(c: dict) -> tuple[float, dict]:
    # bigger is better, with diminishing returns, plus a gene interaction: lower = better
    s = 3.0 - 0.3 * np.log1p(cost(c)["macs"] / 1e4) - 0.05 * (c["kernel"][0] == 5) * c["depth"][1]
    return float(s), {"cc": float(1 - s / 3)}


def in_space(c: dict) -> bool:
    return c["space"] == "toy" and all(len(c[k]) == STAGES and all(x in v for x in c[k]) for k, v in CHOICES.items())


def test_mutate_and_crossover_stay_in_space():
    rng = random.Random(0)
    a, b = sample(rng), sample(rng)
    for _ in range(50):
        m = mutate(a, sample(rng), 0.5, rng)
        x = crossover(a, b, rng)
        assert in_space(m) and in_space(x)
        for k in CHOICES:  # crossover genes come from a parent at the same position
            assert all(g in (ga, gb) for g, ga, gb in zip(x[k], a[k], b[k]))
    assert mutate(a, sample(rng), 0.0, rng) == a
    r = sample(rng)
    assert mutate(a, r, 1.0, rng) == r


def _run(seed: int, constraints: Constraints, predictor=None, screen: int = 0, seeds=None):
    cfg = EvolutionConfig(population=8, iterations=3, parents=3, mutate_prob=0.3, seed=seed, screen_factor=screen)
    s = EvolutionSearch(sample, cost, score, constraints, cfg, predictor=predictor, seeds=seeds)
    return s, s.run(progress=False)


def test_constraints_respected_and_rejections_counted():
    lim = Constraints(max_macs=3e6, max_latency_ms=25.0)
    s, hist = _run(0, lim)
    assert len(hist) == 8 * 4
    assert all(h.cost["macs"] <= 3e6 and h.cost["latency_ms"] <= 25.0 for h in hist)
    assert s.rejected > 0  # the limit actually binds in this space
    assert len({config_key(h.config) for h in hist}) == len(hist)  # nothing evaluated twice
    best_gen0 = min(h.score for h in hist if h.generation == 0)
    assert min(h.score for h in hist) <= best_gen0


def test_seed_configs_evaluated_first_when_feasible():
    big = {"space": "toy", "depth": [4] * 3, "width": [40] * 3, "kernel": [7] * 3}
    small = {"space": "toy", "depth": [1] * 3, "width": [16] * 3, "kernel": [3] * 3}
    _, hist = _run(0, Constraints(max_macs=2e6), seeds=[big, small])
    keys = [config_key(h.config) for h in hist]
    assert config_key(small) == keys[0] and config_key(big) not in keys


def test_deterministic_with_seed():
    lim = Constraints(max_params=2e5)
    _, h1 = _run(7, lim)
    _, h2 = _run(7, lim)
    _, h3 = _run(8, lim)
    assert [config_key(h.config) for h in h1] == [config_key(h.config) for h in h2]
    assert [h.score for h in h1] == [h.score for h in h2]
    assert [config_key(h.config) for h in h1] != [config_key(h.config) for h in h3]


def test_infeasible_limits_raise_clearly():
    with pytest.raises(RuntimeError, match="no new feasible config"):
        _run(0, Constraints(max_macs=1.0))


def test_crossover_of_similar_parents_falls_back_to_mutation():
    """Parents differing in one gene have only themselves as crossover children: the search
    still fills each generation (by mutation) instead of stopping, even with predictor screening
    asking for 3x the children (the main job's search once stopped here)."""
    base = {"space": "toy", "depth": [2, 2, 2], "width": [24, 24, 24], "kernel": [3, 3, 3]}
    twin = {**base, "kernel": [3, 3, 5]}

    cfg = EvolutionConfig(population=2, iterations=3, parents=2, mutate_prob=0.3, mutation_ratio=0.5,
                          seed=0, screen_factor=3)
    s = EvolutionSearch(sample, cost, score, Constraints(), cfg, predictor=create_predictor("ridge"),
                        seeds=[base, twin])           # the initial population: the two near twins
    hist = s.run(progress=False)
    assert len(hist) == 2 * 4 and len({config_key(h.config) for h in hist}) == 8
    assert all(in_space(h.config) for h in hist)


@pytest.mark.parametrize("name", sorted(PREDICTORS))
def test_predictor_rank_correlation_on_scored_candidates(name):
    rng = random.Random(1)
    cands = []
    seen = set()
    while len(cands) < 60:
        c = sample(rng)
        if config_key(c) not in seen:
            seen.add(config_key(c))
            cands.append({"config": c, "score": score(c)[0]})
    kw = {"epochs": 150} if name == "mlp" else {}  # keeps the 10 MLP fits of this test short
    rho = held_out_rank_correlation(cands, name, **kw)
    assert rho["n"] == 60 and rho["folds"] == 5
    assert rho["spearman"] > 0.6, rho  # the score is a smooth function of the genes
    # a predictor trained on shuffled scores must not rank well: the number is not a constant
    shuffled = [{"config": c["config"], "score": s} for c, s in
                zip(cands, np.random.default_rng(0).permutation([c["score"] for c in cands]))]
    assert held_out_rank_correlation(shuffled, name, **kw)["spearman"] < rho["spearman"] - 0.3


def test_screening_search_reports_online_correlation():
    pred = create_predictor("ridge", alpha=1.0)
    _, hist = _run(3, Constraints(max_macs=5e6), predictor=pred, screen=4)
    rows = [h.as_dict() for h in hist]
    assert any(r["predicted_score"] is not None for r in rows)  # screening happened after warm-up
    assert all(r["predicted_score"] is None for r in rows if r["generation"] == 0)
    oc = online_rank_correlation(rows)
    assert oc["n"] == sum(r["predicted_score"] is not None for r in rows) and np.isfinite(oc["spearman"])


def test_spearman_and_encoding():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(0.9486832980505139)  # scipy.stats.spearmanr
    c = {"space": "toy", "b": [1, 2], "a": [3]}
    assert encode(c).tolist() == [3.0, 1.0, 2.0]
