"""Accuracy predictors: fit on candidates already scored, rank new ones before evaluating them.

The encoding is the config's genes in a fixed order (sorted keys, list positions), standardised
on the training set; ridge regression is solved in closed form (numpy), the MLP is a small torch
net. Both are registered in PREDICTORS. Rank quality is reported as Spearman's rho.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

Config = dict[str, Any]


def encode(config: Config) -> np.ndarray:
    """Numeric genes of a config in a stable order ("space" and other strings are skipped)."""
    vals: list[float] = []
    for k in sorted(config):
        v = config[k]
        if isinstance(v, list):
            vals.extend(float(x) for x in v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            vals.append(float(v))
    return np.asarray(vals, dtype=np.float64)


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation (scipy.stats.spearmanr); NaN when fewer than 3 pairs or a constant side."""
    from scipy.stats import spearmanr

    if len(a) != len(b):
        raise ValueError(f"spearman: lengths differ ({len(a)} vs {len(b)})")
    if len(a) < 3:
        return float("nan")
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if np.ptp(a) == 0 or np.ptp(b) == 0:  # constant input: scipy would warn and return NaN
        return float("nan")
    return float(spearmanr(a, b).statistic)


class _Base:
    min_samples = 6

    def __init__(self) -> None:
        self.X: list[np.ndarray] = []
        self.y: list[float] = []
        self._fitted_n = -1

    def add(self, config: Config, score: float) -> None:
        self.X.append(encode(config))
        self.y.append(float(score))
        self._fitted_n = -1

    def ready(self) -> bool:
        return len(self.y) >= self.min_samples

    def _ensure_fit(self) -> None:
        if self._fitted_n != len(self.y):
            self.fit(np.stack(self.X), np.asarray(self.y))
            self._fitted_n = len(self.y)

    def predict(self, configs: Sequence[Config]) -> np.ndarray:
        self._ensure_fit()
        return self._predict(np.stack([encode(c) for c in configs]))

    def fit(self, X: np.ndarray, y: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _predict(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _standardise(self, X: np.ndarray, fit: bool) -> np.ndarray:
        if fit:
            self.mu, self.sd = X.mean(0), X.std(0)
            self.sd[self.sd == 0] = 1.0
        return (X - self.mu) / self.sd


class RidgePredictor(_Base):
    """Ridge regression on the standardised encoding (closed form, intercept unpenalised)."""

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = alpha

    def fit(self, X: np.ndarray, y: np.ndarray) -> None:
        Z = self._standardise(X, fit=True)
        self.y_mu = y.mean()
        A = Z.T @ Z + self.alpha * np.eye(Z.shape[1])
        self.w = np.linalg.solve(A, Z.T @ (y - self.y_mu))

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self._standardise(X, fit=False) @ self.w + self.y_mu


class MLPPredictor(_Base):
    """A two-layer MLP (torch, CPU, full-batch Adam); for larger candidate sets."""

    min_samples = 12

    def __init__(self, hidden: int = 64, epochs: int = 300, lr: float = 1e-2, seed: int = 0) -> None:
        super().__init__()
        self.hidden, self.epochs, self.lr, self.seed = hidden, epochs, lr, seed

    def fit(self, X: np.ndarray, y: np.ndarray) -> None:
        import torch

        g = torch.Generator().manual_seed(self.seed)
        Z = torch.tensor(self._standardise(X, fit=True), dtype=torch.float32)
        self.y_mu, self.y_sd = float(y.mean()), float(y.std() or 1.0)
        t = torch.tensor((y - self.y_mu) / self.y_sd, dtype=torch.float32)[:, None]
        net = torch.nn.Sequential(torch.nn.Linear(Z.shape[1], self.hidden), torch.nn.ReLU(),
                                  torch.nn.Linear(self.hidden, 1))
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 / max(1, p.shape[-1])) ** 0.5)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=1e-4)
        for _ in range(self.epochs):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(net(Z), t)
            loss.backward()
            opt.step()
        self.net = net.eval()

    def _predict(self, X: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            z = torch.tensor(self._standardise(X, fit=False), dtype=torch.float32)
            return self.net(z).numpy()[:, 0].astype(np.float64) * self.y_sd + self.y_mu


PREDICTORS: dict[str, Callable[..., _Base]] = {"ridge": RidgePredictor, "mlp": MLPPredictor}


def create_predictor(name: str | None, **kwargs: Any) -> _Base | None:
    if not name or name == "none":
        return None
    if name not in PREDICTORS:
        raise ValueError(f"unknown predictor {name!r} (have: {sorted(PREDICTORS)})")
    return PREDICTORS[name](**kwargs)


def held_out_rank_correlation(candidates: Sequence[dict], name: str = "ridge", folds: int = 5,
                              seed: int = 0, **kwargs: Any) -> dict[str, float]:
    """k-fold cross-validated Spearman rho between predicted and real scores of scored candidates.

    This is the honest number: each candidate is predicted by a model that never saw it.
    """
    n = len(candidates)
    if n < 2 * folds:
        folds = max(2, n // 3)
    if n < 6:
        return {"spearman": float("nan"), "n": n, "folds": 0}
    rng = np.random.default_rng(seed)
    idx = rng.permutation(n)
    pred = np.empty(n)
    for f in range(folds):
        test = idx[f::folds]
        train = np.setdiff1d(idx, test)
        p = PREDICTORS[name](**kwargs)
        p.fit(np.stack([encode(candidates[i]["config"]) for i in train]),
              np.asarray([candidates[i]["score"] for i in train]))
        pred[test] = p._predict(np.stack([encode(candidates[i]["config"]) for i in test]))
    real = [c["score"] for c in candidates]
    return {"spearman": spearman(pred, real), "n": n, "folds": folds}


def online_rank_correlation(candidates: Sequence[dict]) -> dict[str, float]:
    """Spearman rho between the screening predictions made during search and the real scores."""
    pairs = [(c["predicted_score"], c["score"]) for c in candidates if c.get("predicted_score") is not None]
    if not pairs:
        return {"spearman": float("nan"), "n": 0}
    a, b = zip(*pairs)
    return {"spearman": spearman(a, b), "n": len(pairs)}


__all__ = ["encode", "spearman", "RidgePredictor", "MLPPredictor", "PREDICTORS",
           "create_predictor", "held_out_rank_correlation", "online_rank_correlation"]
