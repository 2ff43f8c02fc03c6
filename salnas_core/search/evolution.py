"""Evolutionary architecture search under cost constraints (AttentiveNAS / OFA style).

Space-agnostic: a config is a JSON dict of lists of ints (plus `"space"`); the search only needs
a sampler of random configs, a cost function and a scorer, all passed in. Mutation resamples each
gene with probability `mutate_prob` from a fresh random config (so it stays inside the space);
crossover takes each gene from either parent. Lower score is better (the selection score).
"""
from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from typing import Any, Callable

from tqdm import tqdm

log = logging.getLogger(__name__)

Config = dict[str, Any]


def config_key(config: Config) -> str:
    """A canonical string for a config (dedup and caching)."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


def _genes(config: Config) -> list[tuple[str, int | None]]:
    """(key, index) pairs of the evolvable genes: each int of each list, or a whole scalar."""
    out: list[tuple[str, int | None]] = []
    for k in sorted(config):
        v = config[k]
        if isinstance(v, list):
            out.extend((k, i) for i in range(len(v)))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append((k, None))
    return out


def _get(config: Config, gene: tuple[str, int | None]) -> Any:
    k, i = gene
    return config[k] if i is None else config[k][i]


def _set(config: Config, gene: tuple[str, int | None], value: Any) -> None:
    k, i = gene
    if i is None:
        config[k] = value
    else:
        config[k][i] = value


def _copy(config: Config) -> Config:
    return json.loads(json.dumps(config))


def mutate(config: Config, random_config: Config, prob: float, rng: random.Random) -> Config:
    """Each gene is replaced by the random config's gene with probability `prob`.

    Lists whose length differs between the two configs (a space with list length tied to depth)
    are swapped whole, so the child is always a config the space can produce.
    """
    child = _copy(config)
    for k in sorted(child):
        v, r = child[k], random_config.get(k)
        if isinstance(v, list) and isinstance(r, list) and len(v) != len(r):
            if rng.random() < prob:
                child[k] = list(r)
            continue
        if isinstance(v, list):
            for i in range(len(v)):
                if rng.random() < prob:
                    v[i] = r[i]
        elif (k, None) in _genes(child) and rng.random() < prob:
            child[k] = r
    return child


def crossover(a: Config, b: Config, rng: random.Random) -> Config:
    """Uniform crossover: each gene from either parent with probability 1/2."""
    child = _copy(a)
    for k in sorted(child):
        va, vb = a[k], b.get(k)
        if isinstance(va, list) and isinstance(vb, list) and len(va) == len(vb):
            child[k] = [x if rng.random() < 0.5 else y for x, y in zip(va, vb)]
        elif isinstance(va, (list, int, float)) and not isinstance(va, bool) and vb is not None:
            child[k] = _copy({"v": va if rng.random() < 0.5 else vb})["v"]
    return child


@dataclass
class Constraints:
    """Upper limits on a candidate's costs; None = unconstrained."""

    max_macs: float | None = None       # MACs (not GMACs)
    max_params: float | None = None
    max_latency_ms: float | None = None

    @classmethod
    def from_dict(cls, d: dict | None) -> "Constraints":
        d = dict(d or {})
        gm = d.pop("max_gmacs", None)
        mp = d.pop("max_mparams", None)
        c = cls(**{k: d[k] for k in ("max_macs", "max_params", "max_latency_ms") if k in d})
        if gm is not None:
            c.max_macs = float(gm) * 1e9
        if mp is not None:
            c.max_params = float(mp) * 1e6
        return c

    def ok(self, cost: dict[str, float]) -> bool:
        return ((self.max_macs is None or cost["macs"] <= self.max_macs)
                and (self.max_params is None or cost["params"] <= self.max_params)
                and (self.max_latency_ms is None or cost["latency_ms"] <= self.max_latency_ms))

    def as_dict(self) -> dict[str, float | None]:
        return {"max_macs": self.max_macs, "max_params": self.max_params, "max_latency_ms": self.max_latency_ms}


@dataclass
class EvolutionConfig:
    """Evolution hyper-parameters (params.yaml `search:`)."""

    population: int = 16
    iterations: int = 4
    parents: int = 4            # top-k kept as parents each generation
    mutate_prob: float = 0.3
    mutation_ratio: float = 0.5  # share of each new generation made by mutation (rest: crossover)
    seed: int = 0
    max_tries: int = 200        # attempts to draw one feasible candidate before giving up
    screen_factor: int = 0      # >0: draw this many times more children, keep the predictor's best


@dataclass
class Candidate:
    config: Config
    score: float
    cost: dict[str, float]
    generation: int
    predicted: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"config": self.config, "score": self.score, "generation": self.generation,
                "predicted_score": self.predicted, "metrics": self.metrics, **self.cost}


class EvolutionSearch:
    """Evolution with feasibility rejection, optional predictor screening and a score cache.

    sample_fn(rng) -> random config; cost_fn(config) -> {"macs","params","latency_ms"};
    score_fn(config) -> (score, metrics) (the expensive part: BN recalibration + validation).
    """

    def __init__(self, sample_fn: Callable[[random.Random], Config],
                 cost_fn: Callable[[Config], dict[str, float]],
                 score_fn: Callable[[Config], tuple[float, dict[str, float]]],
                 constraints: Constraints, cfg: EvolutionConfig,
                 predictor: Any | None = None, seeds: list[Config] | None = None):
        self.sample_fn, self.cost_fn, self.score_fn = sample_fn, cost_fn, score_fn
        self.constraints, self.cfg, self.predictor = constraints, cfg, predictor
        self.seeds = list(seeds or [])
        self.rng = random.Random(cfg.seed)
        self.history: list[Candidate] = []
        self._scored: dict[str, Candidate] = {}
        self._costs: dict[str, dict[str, float]] = {}
        self.rejected = 0

    def cost(self, config: Config) -> dict[str, float]:
        k = config_key(config)
        if k not in self._costs:
            self._costs[k] = self.cost_fn(config)
        return self._costs[k]

    def feasible(self, config: Config) -> bool:
        ok = self.constraints.ok(self.cost(config))
        self.rejected += not ok
        return ok

    def _draw(self, make: Callable[[], Config], taken: set[str],
              fallback: Callable[[], Config] | None = None) -> Config:
        """A new feasible config from `make`, else from `fallback` (crossover of a few similar
        parents can run out of new children: mutation still finds some)."""
        for maker in (make, fallback) if fallback is not None else (make,):
            for _ in range(self.cfg.max_tries):
                c = maker()
                k = config_key(c)
                if k in taken or k in self._scored:
                    continue
                if self.feasible(c):
                    return c
        raise RuntimeError(
            f"search: no new feasible config after {self.cfg.max_tries} tries under {self.constraints.as_dict()}"
            " (limits below the smallest subnet?)")

    def _evaluate(self, config: Config, generation: int, predicted: float | None) -> Candidate:
        k = config_key(config)
        if k in self._scored:
            return self._scored[k]
        score, metrics = self.score_fn(config)
        cand = Candidate(config, float(score), self.cost(config), generation, predicted, dict(metrics))
        self._scored[k] = cand
        self.history.append(cand)
        if self.predictor is not None:
            self.predictor.add(config, cand.score)
        return cand

    def _screen(self, make: Callable[[], Config], n: int, taken: set[str],
                fallback: Callable[[], Config] | None = None) -> list[tuple[Config, float | None]]:
        """Draw n children; with a fitted predictor draw up to n*screen_factor and keep the best n
        (a small space may hold fewer new configs than the screening asks for: then screen those)."""
        use = self.predictor is not None and self.cfg.screen_factor > 1 and self.predictor.ready()
        m = n * self.cfg.screen_factor if use else n
        pool: list[Config] = []
        for _ in range(m):
            try:
                c = self._draw(make, taken, fallback)
            except RuntimeError:
                if len(pool) >= n:
                    break
                raise
            taken.add(config_key(c))
            pool.append(c)
        if not use:
            return [(c, None) for c in pool]
        preds = self.predictor.predict(pool)
        order = sorted(range(len(pool)), key=lambda i: preds[i])
        return [(pool[i], float(preds[i])) for i in order[:n]]

    def run(self, progress: bool = True) -> list[Candidate]:
        cfg, rng = self.cfg, self.rng
        taken: set[str] = set()
        init: list[Config] = []
        for s in self.seeds:  # e.g. the max/min subnets: always evaluated when feasible
            if config_key(s) not in taken and self.feasible(s):
                init.append(s)
                taken.add(config_key(s))
        while len(init) < cfg.population:
            c = self._draw(lambda: self.sample_fn(rng), taken)
            taken.add(config_key(c))
            init.append(c)
        total = cfg.population * (cfg.iterations + 1)
        bar = tqdm(total=total, desc="search", unit="cand", disable=not progress)
        population = []
        for c in init:
            population.append(self._evaluate(c, 0, None))
            bar.update(1)
        for gen in range(1, cfg.iterations + 1):
            population.sort(key=lambda c: c.score)
            parents = population[: max(1, cfg.parents)]
            n_mut = int(round(cfg.population * cfg.mutation_ratio))
            n_cross = cfg.population - n_mut

            def make_mut() -> Config:
                p = rng.choice(parents).config
                return mutate(p, self.sample_fn(rng), cfg.mutate_prob, rng)

            def make_cross() -> Config:
                a, b = rng.choice(parents).config, rng.choice(parents).config
                return crossover(a, b, rng)

            children = (self._screen(make_mut, n_mut, taken)
                        + self._screen(make_cross, n_cross, taken, fallback=make_mut))
            new = []
            for c, pred in children:
                new.append(self._evaluate(c, gen, pred))
                bar.update(1)
            population = sorted(parents + new, key=lambda c: c.score)[: cfg.population]
            log.info("generation %d: best %.4f", gen, population[0].score)
            bar.set_postfix(best=f"{population[0].score:.4f}")
        bar.close()
        return self.history
