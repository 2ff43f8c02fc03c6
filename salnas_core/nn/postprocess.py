"""The map's post-processing: a Gaussian blur and a centre prior, fitted on training data.

The MIT benchmark and the SalNAS authors smooth predictions and weigh in the centre bias that
every eye-tracking set shows, either mixed in (a share of the map) or as a prior multiplied in
(`centre_power`: y * prior^p, a tempered log-prior added to the log-density, as probabilistic
saliency models such as DeepGaze add their centre bias). The multiplied prior is the one that
carries across datasets: fitted on OSIE's holdout it lifted NUS Scene, a more centred set never
trained on (bench/RESULTS.md "Cross-dataset prior"); here both are part of the static model (`SalNASNet.postprocess`,
applied at the net's working size inside `_core`), so predict, evaluate, the MLflow pyfunc and
the ONNX/TorchScript exports all run the same map. Fitted by `salnas_core.evaluate.postprocess`.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from salnas_core.metrics.blur import gaussian_blur


class Postprocess(nn.Module):
    """y -> blur(y), times the centred Gaussian to a power, mixed with it, rescaled to a maximum of 1.

    Args:
        blur_px: Gaussian sigma in pixels of the working-size map (0: no blur).
        centre_weight: share of the centre prior in the mix of the two maps, each normalised to
            mean 1 (0: none).
        centre_sigma: (sigma_y, sigma_x) of the prior as fractions of the map's height and width.
        centre_power: the map is multiplied by the prior to this power first (0: not).
    """

    def __init__(self, blur_px: float = 0.0, centre_weight: float = 0.0,
                 centre_sigma: tuple[float, float] | list[float] = (0.25, 0.25), centre_power: float = 0.0):
        super().__init__()
        if blur_px < 0 or not 0.0 <= centre_weight <= 1.0 or min(centre_sigma) <= 0 or centre_power < 0:
            raise ValueError(f"postprocess: need blur_px >= 0, 0 <= centre_weight <= 1, centre_sigma > 0, "
                             f"centre_power >= 0; got {blur_px}, {centre_weight}, {list(centre_sigma)}, {centre_power}")
        self.blur_px, self.centre_weight = float(blur_px), float(centre_weight)
        self.centre_sigma = (float(centre_sigma[0]), float(centre_sigma[1]))
        self.centre_power = float(centre_power)

    def as_dict(self) -> dict[str, Any]:
        return {"blur_px": self.blur_px, "centre_weight": self.centre_weight, "centre_sigma": list(self.centre_sigma),
                "centre_power": self.centre_power}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.as_dict().items())

    def centre(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        """The prior (1, 1, h, w), mean 1."""
        y = (torch.arange(h, dtype=like.dtype, device=like.device) + 0.5) / h - 0.5
        x = (torch.arange(w, dtype=like.dtype, device=like.device) + 0.5) / w - 0.5
        g = torch.exp(-0.5 * (y[:, None] / self.centre_sigma[0]) ** 2) * torch.exp(-0.5 * (x[None, :] / self.centre_sigma[1]) ** 2)
        return (g / g.mean())[None, None]

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if self.blur_px > 0:
            y = gaussian_blur(y, 2 * math.ceil(3 * self.blur_px) + 1, self.blur_px)
        if self.centre_power > 0:
            y = y * self.centre(y.shape[-2], y.shape[-1], y) ** self.centre_power
        if self.centre_weight > 0:
            y = y / y.mean(dim=(2, 3), keepdim=True).clamp_min(1e-12)
            y = (1.0 - self.centre_weight) * y + self.centre_weight * self.centre(y.shape[-2], y.shape[-1], y)
        if self.blur_px > 0 or self.centre_weight > 0 or self.centre_power > 0:
            y = y / y.amax(dim=(2, 3), keepdim=True).clamp_min(1e-12)
        return y
