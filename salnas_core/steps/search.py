"""`salnas search`: evolutionary search of subnets of a trained supernet under cost limits.

Reads the supernet (RUN_DIR/supernet.pt) and the ingested dataset; writes SEARCH_DIR/
candidates.json (every scored candidate: config, score, metrics, MACs, params, latency),
pareto.json + pareto.png (fronts of score against MACs and against latency) and variants.json
(one chosen subnet per budget of params.yaml `search.budgets`, plus FIXED: a random, non-searched
config of similar MACs, the baseline that shows what the search adds).

Every candidate is extracted as a static subnet, its BN statistics recalibrated on training-split
images, and scored with the selection score (lower is better) on the ingested dataset's holdout
slice of the training split (`ingest.holdout`): the validation split is never read here, it is left
to the final evaluation (no selection bias). Scores,
costs and the latency table are cached under SEARCH_DIR/.work, so a killed search resumes by
replaying the same (seeded) evolution without re-scoring.
"""
from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Any

from salnas_core import artifacts
from salnas_core.errors import UserError

log = logging.getLogger(__name__)


def _limits(budget: dict[str, Any], ref: dict[str, float], glob: dict[str, Any]) -> dict[str, float | None]:
    """Absolute limits of a budget: max_gmacs/max_mparams/max_latency_ms and *_frac of the max subnet."""
    lim: dict[str, float | None] = {"macs": None, "params": None, "latency_ms": None}

    def tighten(k: str, v: float | None) -> None:
        if v is not None:
            lim[k] = v if lim[k] is None else min(lim[k], v)

    for src in (glob or {}, budget or {}):
        tighten("macs", src.get("max_gmacs") and float(src["max_gmacs"]) * 1e9)
        tighten("params", src.get("max_mparams") and float(src["max_mparams"]) * 1e6)
        tighten("latency_ms", src.get("max_latency_ms") and float(src["max_latency_ms"]))
        tighten("macs", src.get("macs_frac") and float(src["macs_frac"]) * ref["macs"])
        tighten("params", src.get("params_frac") and float(src["params_frac"]) * ref["params"])
        tighten("latency_ms", src.get("latency_frac") and float(src["latency_frac"]) * ref["latency_ms"])
    return lim


class _Cache:
    """JSON dict persisted atomically (scores and costs of configs, for resume)."""

    def __init__(self, path: Path):
        from salnas_core.utils.io import read_json

        self.path = path
        self.data: dict[str, Any] = {}
        if path.exists():
            try:
                self.data = read_json(path)
            except ValueError as e:
                log.warning("%s (ignored, starting afresh)", e)

    def save(self) -> None:
        from salnas_core.utils.io import atomic_write_json

        atomic_write_json(self.path, self.data, indent=None)


def write_plot_tables(cands: list[dict[str, Any]], front: list[Any], variants: dict[str, Any], plots: Path) -> None:
    """plots/candidates.csv (every candidate scored) and plots/pareto.csv (the MACs front), for
    `dvc plots`: GMACs against the holdout selection score (lower is better)."""
    from salnas_core.utils.io import atomic_write_text

    chosen = {json.dumps(v["config"], sort_keys=True): k for k, v in variants.items()}
    rows = ["gmacs,score,latency_ms,mparams,variant"]
    for c in sorted(cands, key=lambda c: c["macs"]):
        rows.append(f"{c['macs'] / 1e9:.6f},{c['score']:.6f},{c['latency_ms']:.3f},{c['params'] / 1e6:.4f},"
                    f"{chosen.get(json.dumps(c['config'], sort_keys=True), '')}")
    atomic_write_text(plots / "candidates.csv", "\n".join(rows) + "\n")
    pts = front  # candidate dicts, sorted by cost
    rows = ["gmacs,score"] + [f"{c['macs'] / 1e9:.6f},{c['score']:.6f}" for c in sorted(pts, key=lambda c: c["macs"])]
    atomic_write_text(plots / "pareto.csv", "\n".join(rows) + "\n")


def mark_same_subnets(variants: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """Budgets whose best subnet is one an earlier budget chose (a weak search, or a smaller
    budget's pick that beats everything found within the larger one's limits) get
    `same_as: <earlier>`; distill then copies instead of repeating. Returns the pairs."""
    from salnas_core.search.evolution import config_key

    first_of: dict[str, str] = {}
    pairs = []
    for name, v in variants.items():
        k = config_key(v["config"])
        if k in first_of:
            v["same_as"] = first_of[k]
            pairs.append((first_of[k], name))
            log.warning("search: budgets %s and %s chose the same subnet (score %.4f): nothing better was "
                        "found within %s's limits; a larger search (search.population, search.iterations) "
                        "may separate them", first_of[k], name, v["score"], first_of[k])
        else:
            first_of[k] = name
    return pairs


def run(supernet: str | Path, data: str | Path, out: str | Path, preset: str | None = None,
        overrides: dict | None = None, params_path: str | Path | None = None, force: bool = False,
        device: str = "auto", progress: bool = True, track: bool = True) -> dict[str, Any]:
    """Search; returns the variants and a summary. See the module docstring for the outputs."""
    import torch

    from salnas_core.data.dataset import load_manifest, make_loader
    from salnas_core.metrics.scoring import validate
    from salnas_core.search.evolution import (
        Constraints,
        EvolutionConfig,
        EvolutionSearch,
        config_key,
    )
    from salnas_core.search.latency import DirectLatency, LatencyTable
    from salnas_core.search.latency import search_engine as search_engine_of
    from salnas_core.search.pareto import choose_distinct, choose_for_budget, pareto_front, plot_pareto
    from salnas_core.search.predictor import (
        create_predictor,
        held_out_rank_correlation,
        online_rank_correlation,
    )
    from salnas_core.supernet import count_macs, count_params, recalibrate_bn
    from salnas_core.train.checkpoint import load_supernet
    from salnas_core.utils.io import atomic_write_json, read_json
    from salnas_core.utils.params import step_params

    from ._nas_common import (
        file_sha256,
        find_dataset,
        params_hash,
        supernet_file,
        tracking,
    )

    t_start = time.perf_counter()
    from salnas_core.serve.predict import pick_device

    device = str(pick_device(device))  # auto: cuda when this machine has it (a GPU node), else cpu
    p = step_params("search", preset, params_path, overrides)
    out = Path(out)
    sn_path = supernet_file(supernet)
    root = find_dataset(data)
    manifest = load_manifest(root)
    sig = params_hash(p, file_sha256(sn_path), manifest.get("version"))
    if not force and (out / "variants.json").exists() and (out / "candidates.json").exists():
        done = read_json(out / "candidates.json")
        if done.get("signature") == sig:
            log.info("%s: search already complete for these params, supernet and data", out)
            return {"out": str(out), "skipped": True, "variants": artifacts.read_variants(out)}

    torch.manual_seed(int(p["seed"]))
    net = load_supernet(sn_path).to(device).eval()
    space = net.space
    norm = space.normalization
    in_size = tuple(p["input_size"]) if p.get("input_size") else tuple(manifest["working_size"])
    calib = make_loader(root, "train", int(p["bn_batch_size"]), norm, shuffle=False,
                        limit=int(p["bn_images"]), size=in_size)
    # candidates are scored on the holdout slice of the training split, never on val
    val = make_loader(root, "holdout", int(p["holdout_batch_size"]), norm, shuffle=False,
                      limit=p.get("holdout_limit"), size=in_size)
    work = out / ".work"
    scores, costs = _Cache(work / "scores.json"), _Cache(work / "costs.json")

    lat_p = p["latency"]
    lat_size = tuple(lat_p["input_size"])
    lat_dev = lat_p.get("device", "cpu")
    if lat_dev.startswith("cuda") and not torch.cuda.is_available():
        log.warning("search: latency device %s absent; measuring on cpu", lat_dev)
        lat_dev = "cpu"
    try:
        lat_engine = search_engine_of(lat_p.get("engine", "auto"), lat_dev)
    except ValueError as e:
        raise UserError(f"params search.latency.engine: {e}") from None
    if lat_p.get("mode", "lut") == "lut":
        lat = LatencyTable(lat_dev, lat_size, 1, lat_p.get("cache_dir"), int(lat_p["warmup"]), int(lat_p["repeats"]),
                           engine=lat_engine, op_threads=lat_p.get("op_threads"))
    elif lat_p["mode"] == "measure":
        lat = DirectLatency(lat_dev, lat_size, 1, int(lat_p["warmup"]), int(lat_p["repeats"]), engine=lat_engine)
    else:
        raise UserError(f"params search.latency.mode: {lat_p['mode']!r} (lut | measure)")

    def static(config: dict, weights: bool) -> torch.nn.Module:
        return net.build_from_config(config, preserve_weight=weights).eval()

    if isinstance(lat, LatencyTable) and (lat.calibration.get("n", 0) < int(lat_p["calibrate"]) or force):
        rng = random.Random(int(p["seed"]) + 17)
        cal_cfgs = [space.max_config(), space.min_config()] + [space.sample_config(rng)
                                                                for _ in range(max(0, int(lat_p["calibrate"]) - 2))]
        log.info("search: building the latency table (%s)", lat.key)
        lat.calibrate([static(c, False) for c in cal_cfgs])
        lat.save()

    def cost_fn(config: dict) -> dict[str, float]:
        k = config_key(config)
        if k not in costs.data:
            m = static(config, False)
            costs.data[k] = {"macs": float(count_macs(m, lat_size)), "params": float(count_params(m)),
                             "latency_ms": float(lat.predict(m))}
            costs.save()
            if isinstance(lat, LatencyTable):
                lat.save()
        return costs.data[k]

    def score_fn(config: dict) -> tuple[float, dict[str, float]]:
        k = config_key(config)
        if k not in scores.data:
            m = static(config, True)
            recalibrate_bn(m, calib, len(calib))
            scores.data[k] = validate(m, val, device)
            scores.save()
        met = scores.data[k]
        return met["score"], met

    track_params = {**p, "supernet": str(sn_path), "data": str(root), "data_version": manifest.get("version")}
    with tracking("search", track_params, enabled=track) as (mlog, log_artifact):
        max_cfg, min_cfg = space.max_config(), space.min_config()
        ref = cost_fn(max_cfg)
        min_cost = cost_fn(min_cfg)
        budgets = dict(p["budgets"])
        if p.get("variants"):
            missing = [v for v in p["variants"] if v not in budgets]
            if missing:
                raise UserError(f"params search.variants: {missing} not in search.budgets ({sorted(budgets)})")
            budgets = {k: budgets[k] for k in p["variants"]}
        evo_cfg = EvolutionConfig(population=int(p["population"]), iterations=int(p["iterations"]),
                                  parents=int(p["parents"]), mutate_prob=float(p["mutate_prob"]),
                                  mutation_ratio=float(p["mutation_ratio"]), seed=int(p["seed"]),
                                  screen_factor=int(p.get("screen_factor") or 0))
        all_cands: dict[str, dict[str, Any]] = {}
        gen0: dict[str, list[dict]] = {}
        predictor_name = p.get("predictor") or "none"
        predictor = create_predictor(predictor_name) if predictor_name != "none" else None
        skipped: dict[str, str] = {}
        limits_of: dict[str, dict[str, float | None]] = {}
        n_step = 0

        def record(cands: list, budget: str) -> None:
            nonlocal n_step
            for c in cands:
                d = c.as_dict()
                k = config_key(d["config"])
                if k not in all_cands:
                    d["budgets"] = [budget]
                    all_cands[k] = d
                    n_step += 1
                    mlog({"candidate_score": d["score"], "candidate_gmacs": d["macs"] / 1e9,
                          "candidate_latency_ms": d["latency_ms"]}, n_step)
                elif budget not in all_cands[k]["budgets"]:
                    all_cands[k]["budgets"].append(budget)

        # one evolution per budget; score_fn/cost_fn caches mean no config is scored twice
        for i, (name, b) in enumerate(budgets.items()):
            b = dict(b or {})
            if b.get("max_subnet"):
                s, met = score_fn(max_cfg)
                from salnas_core.search.evolution import Candidate

                record([Candidate(max_cfg, s, ref, 0, None, met)], name)
                limits_of[name] = {"macs": None, "params": None, "latency_ms": None}
                continue
            lim = _limits(b, ref, p.get("constraints") or {})
            limits_of[name] = lim
            if not Constraints(max_macs=lim["macs"], max_params=lim["params"], max_latency_ms=lim["latency_ms"]).ok(min_cost):
                skipped[name] = f"limits {lim} are below the min subnet's costs {min_cost}"
                log.warning("search: budget %s skipped: %s", name, skipped[name])
                continue
            cons = Constraints(max_macs=lim["macs"], max_params=lim["params"], max_latency_ms=lim["latency_ms"])
            cfg_i = EvolutionConfig(**{**evo_cfg.__dict__, "seed": evo_cfg.seed + 1000 * i})
            evo = EvolutionSearch(lambda rng: space.sample_config(rng), cost_fn, score_fn, cons, cfg_i,
                                  predictor=predictor, seeds=[min_cfg])
            log.info("search: budget %s, limits %s", name, lim)
            hist = evo.run(progress=progress)
            gen0[name] = [c.as_dict() for c in hist if c.generation == 0 and config_key(c.config) != config_key(min_cfg)]
            record(hist, name)

        cands = list(all_cands.values())
        variants: dict[str, dict[str, Any]] = {}
        searched = {n: limits_of[n] for n in budgets if n not in skipped and not (budgets[n] or {}).get("max_subnet")}
        # distinct: L, M, S at falling cost on the front, not one small subnet that wins every limit
        picks = (choose_distinct(cands, searched) if p.get("distinct", True)
                 else {n: choose_for_budget(cands, lim) for n, lim in searched.items()})
        for name in budgets:
            if name in skipped:
                continue
            c = (next(x for x in cands if config_key(x["config"]) == config_key(max_cfg))
                 if (budgets[name] or {}).get("max_subnet") else picks[name])
            if c is None:
                skipped[name] = "no evaluated candidate within the limits"
                continue
            variants[name] = {"config": c["config"], "macs": c["macs"], "params": c["params"],
                              "latency_ms": c["latency_ms"], "score": c["score"], "metrics": c["metrics"],
                              "limits": limits_of[name], "searched": not (budgets[name] or {}).get("max_subnet")}
        mark_same_subnets(variants)
        # FIXED: a random config (never selected by score) with MACs closest to the reference variant
        ref_name = p.get("fixed_baseline")
        if ref_name and ref_name in variants and gen0.get(ref_name):
            target = variants[ref_name]["macs"]
            pool = [c for c in gen0[ref_name] if config_key(c["config"]) != config_key(variants[ref_name]["config"])]
            if pool:
                c = min(pool, key=lambda c: abs(c["macs"] - target))
                variants["FIXED"] = {"config": c["config"], "macs": c["macs"], "params": c["params"],
                                     "latency_ms": c["latency_ms"], "score": c["score"], "metrics": c["metrics"],
                                     "limits": None, "searched": False,
                                     "note": f"random config of the space with MACs closest to {ref_name}'s, "
                                             "chosen without looking at its score"}

        rho = held_out_rank_correlation(cands, predictor_name if predictor_name != "none" else "ridge")
        online = online_rank_correlation(cands)
        fronts = {"macs": pareto_front(cands, "macs"), "latency_ms": pareto_front(cands, "latency_ms")}
        out.mkdir(parents=True, exist_ok=True)
        meta = {"signature": sig, "space": space.name, "supernet": str(sn_path), "data": str(root),
                "data_version": manifest.get("version"), "preset": p.get("preset"), "score_input_size": list(in_size),
                "score_split": "holdout", "score_images": len(val.dataset),
                "cost_input_size": list(lat_size), "latency": {"mode": lat_p.get("mode", "lut"), "device": lat_dev, "engine": lat_engine,
                                                              "key": getattr(lat, "key", None),
                                                              "calibration": getattr(lat, "calibration", None),
                                                              "table": str(getattr(lat, "path", ""))},
                "predictor": {"name": predictor_name, "held_out_spearman": rho, "screening_spearman": online},
                "max_subnet": ref, "min_subnet": min_cost, "skipped_budgets": skipped,
                "seconds": time.perf_counter() - t_start}
        plot_pareto(cands, out / "pareto.png", chosen=variants)
        atomic_write_json(out / "pareto.json", {"front_macs": fronts["macs"], "front_latency_ms": fronts["latency_ms"],
                                                "space": space.name})
        atomic_write_json(out / "candidates.json", {**meta, "n": len(cands), "candidates": cands})
        write_plot_tables(cands, fronts["macs"], variants, out / "plots")
        artifacts.write_variants(out, {k: {**v, "latency_engine": lat_engine} for k, v in variants.items()})  # last: marks done
        mlog({"n_candidates": len(cands), "predictor_spearman": rho["spearman"],
              "search_seconds": meta["seconds"], **{f"{k}_score": v["score"] for k, v in variants.items()}}, None)
        for f in ("variants.json", "pareto.json", "pareto.png", "candidates.json"):
            log_artifact(out / f)
    return {"out": str(out), "variants": variants, "n_candidates": len(cands), "predictor": meta["predictor"],
            "skipped_budgets": skipped, "seconds": meta["seconds"]}


def summarize(s: dict[str, Any]) -> str:
    return json.dumps({"out": s["out"], "skipped": s.get("skipped", False),
                       "variants": {k: {"score": v["score"], "gmacs": v["macs"] / 1e9, "latency_ms": v["latency_ms"]}
                                    for k, v in s["variants"].items()}}, indent=1)
