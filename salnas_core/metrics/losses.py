"""Differentiable, batched saliency losses (torch).

Every `*_loss` is "lower is better" and returns the batch mean (or per-image values with
`reduction="none"`):
  kld_loss = KLD                 cc_loss = 1 - CC
  nss_loss = 1 - sigmoid(NSS)    sim_loss = 1 - SIM
and `SalNASLoss` = w_kld*KLD + w_cc*(1 - CC) + w_nss*(1 - sigmoid(NSS)) (the SalNAS objective).

They follow the MIT metric definitions (see functional.py) but are computed in float32 (or the
input's dtype if float64) and guarded so that a constant or all-zero prediction gives a finite
value and finite gradients: a constant map has CC = NSS = 0 and SIM of the uniform map, an
all-zero map is kept as zero for KLD (as MIT does).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["kld_loss", "cc_loss", "nss_loss", "sim_loss", "SalNASLoss", "LOSSES"]

MIT_EPS = 2.220446049250313e-16


def _var_floor(x: torch.Tensor) -> torch.Tensor:
    """Variance floor for the standardisations in CC and NSS: (1e-6 * mean|x|)^2 + 1e-24.
    Relative to the map's own magnitude, so it changes a real map's CC/NSS by ~1e-10 at most,
    yet keeps sqrt differentiable at a constant map, where the gradient is then finite and
    moderate (~1e6 / (N * mean|x|) per pixel); the 1e-24 covers the all-zero map in float32."""
    return (1e-6 * x.detach().abs().mean(-1, keepdim=True)) ** 2 + 1e-24


def _flat(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.dim() == 4:
        if x.shape[1] != 1:
            raise ValueError(f"{name}: expected (B, 1, H, W), got {tuple(x.shape)}")
        x = x[:, 0]
    if x.dim() != 3:
        raise ValueError(f"{name}: expected (B, 1, H, W) or (B, H, W), got {tuple(x.shape)}")
    x = x.reshape(x.shape[0], -1)
    return x if x.dtype == torch.float64 else x.float()


def _pair(pred: torch.Tensor, target: torch.Tensor, tname: str) -> tuple[torch.Tensor, torch.Tensor]:
    if pred.shape[-2:] != target.shape[-2:] or pred.shape[0] != target.shape[0]:
        raise ValueError(f"pred has shape {tuple(pred.shape)} but {tname} has shape "
                         f"{tuple(target.shape)}: resize the prediction to the target size")
    p, t = _flat(pred, "pred"), _flat(target, tname)
    return p, t.to(p.dtype)


def _reduce(v: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return v.mean()
    if reduction == "sum":
        return v.sum()
    if reduction == "none":
        return v
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _safe_sum_normalise(x: torch.Tensor) -> torch.Tensor:
    """x / sum(x) per row; an all-zero row stays zero (MIT's `if any(map(:))`), no 0/0."""
    s = x.sum(-1, keepdim=True)
    return x / torch.where(s != 0, s, torch.ones_like(s))


def kld_per_image(pred: torch.Tensor, density: torch.Tensor, eps: float = MIT_EPS) -> torch.Tensor:
    p, d = _pair(pred, density, "density")
    p, d = _safe_sum_normalise(p), _safe_sum_normalise(d)
    return (d * torch.log(eps + d / (p + eps))).sum(-1)


def cc_per_image(pred: torch.Tensor, density: torch.Tensor) -> torch.Tensor:
    p, d = _pair(pred, density, "density")
    a = p - p.mean(-1, keepdim=True)
    b = d - d.mean(-1, keepdim=True)
    # Pearson r = <a,b> / (|a| |b|); each norm floored so a constant map gives r = 0, not 0/0
    n = a.shape[-1]
    na = torch.sqrt((a * a).sum(-1) + n * _var_floor(p)[:, 0])
    nb = torch.sqrt((b * b).sum(-1) + n * _var_floor(d)[:, 0])
    return (a * b).sum(-1) / (na * nb)


def nss_per_image(pred: torch.Tensor, fixations: torch.Tensor) -> torch.Tensor:
    """NSS per image (std with N-1 as MIT); 0 for an image without fixations."""
    p, f = _pair(pred, fixations, "fixations")
    f = (f > 0).to(p.dtype)
    n = p.shape[-1]
    a = p - p.mean(-1, keepdim=True)
    std = torch.sqrt((a * a).sum(-1, keepdim=True) / max(n - 1, 1) + _var_floor(p))
    nf = f.sum(-1)
    return ((a / std) * f).sum(-1) / nf.clamp_min(1)


def _minmax_distribution(x: torch.Tensor) -> torch.Tensor:
    """MIT SIM normalisation: min-max, then sum to 1; a constant row becomes uniform, an
    all-zero row stays zero (MIT keeps a zero map zero)."""
    lo = x.amin(-1, keepdim=True)
    rng = x.amax(-1, keepdim=True) - lo
    const = rng == 0
    m = (x - lo) / torch.where(const, torch.ones_like(rng), rng)
    m = torch.where(const, torch.ones_like(m), m)
    zero = (x == 0).all(-1, keepdim=True)
    m = torch.where(zero, torch.zeros_like(m), m)
    return _safe_sum_normalise(m)


def sim_per_image(pred: torch.Tensor, density: torch.Tensor) -> torch.Tensor:
    p, d = _pair(pred, density, "density")
    return torch.minimum(_minmax_distribution(p), _minmax_distribution(d)).sum(-1)


def kld_loss(pred: torch.Tensor, density: torch.Tensor, reduction: str = "mean",
             eps: float = MIT_EPS) -> torch.Tensor:
    """KL divergence sum(D log(eps + D/(P + eps))) of sum-normalised maps (MIT KLdiv)."""
    return _reduce(kld_per_image(pred, density, eps), reduction)


def cc_loss(pred: torch.Tensor, density: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """1 - CC (Pearson correlation of prediction and density)."""
    return _reduce(1.0 - cc_per_image(pred, density), reduction)


def nss_loss(pred: torch.Tensor, fixations: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """1 - sigmoid(NSS): bounded in (0, 1) so it can be summed with KLD and 1 - CC."""
    return _reduce(1.0 - torch.sigmoid(nss_per_image(pred, fixations)), reduction)


def sim_loss(pred: torch.Tensor, density: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """1 - SIM (histogram intersection of min-max then sum-normalised maps)."""
    return _reduce(1.0 - sim_per_image(pred, density), reduction)


LOSSES = {"kld": kld_loss, "cc": cc_loss, "nss": nss_loss, "sim": sim_loss}


class SalNASLoss(nn.Module):
    """The SalNAS training objective: w_kld*KLD + w_cc*(1 - CC) + w_nss*(1 - sigmoid(NSS)),
    averaged over the batch. Optional w_sim adds w_sim*(1 - SIM) (0 by default, as the paper)."""

    def __init__(self, w_kld: float = 1.0, w_cc: float = 1.0, w_nss: float = 1.0,
                 w_sim: float = 0.0, eps: float = MIT_EPS) -> None:
        super().__init__()
        self.w_kld, self.w_cc, self.w_nss, self.w_sim, self.eps = w_kld, w_cc, w_nss, w_sim, eps

    def terms(self, pred: torch.Tensor, density: torch.Tensor,
              fixations: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-term batch means (for logging): kld, cc, nss (the metric values, not 1 - x)."""
        out = {"kld": kld_per_image(pred, density, self.eps).mean(),
               "cc": cc_per_image(pred, density).mean(),
               "nss": nss_per_image(pred, fixations).mean()}
        if self.w_sim:
            out["sim"] = sim_per_image(pred, density).mean()
        return out

    def forward(self, pred: torch.Tensor, density: torch.Tensor, fixations: torch.Tensor) -> torch.Tensor:
        loss = (self.w_kld * kld_per_image(pred, density, self.eps)
                + self.w_cc * (1.0 - cc_per_image(pred, density))
                + self.w_nss * (1.0 - torch.sigmoid(nss_per_image(pred, fixations))))
        if self.w_sim:
            loss = loss + self.w_sim * (1.0 - sim_per_image(pred, density))
        return loss.mean()

    def extra_repr(self) -> str:
        return f"w_kld={self.w_kld}, w_cc={self.w_cc}, w_nss={self.w_nss}, w_sim={self.w_sim}"
