"""Saliency metrics (MIT benchmark conventions), batched torchmetrics classes and losses.

Functional API (numpy float64, one 2-D map at a time): cc, kld, sim, nss, auc_judd, auc_borji,
sauc, info_gain. Ranking: selection_score. Batched: SaliencyMetrics and one Metric class per
metric (salnas_core.metrics.batched). Losses: salnas_core.metrics.losses.
See docs/metrics.md for every convention.
"""
from .functional import auc_borji, auc_judd, cc, info_gain, kld, nss, sauc, sim
from .selection import selection_score

__all__ = ["cc", "kld", "sim", "nss", "auc_judd", "auc_borji", "sauc", "info_gain",
           "selection_score"]

try:  # batched classes land after the functional API; keep the package importable meanwhile
    from .batched import (AUCBorji, AUCJudd, CC, KLD, METRIC_CLASSES, NSS, SAUC, SIM,  # noqa: F401
                          InfoGain, SaliencyMetrics)
    __all__ += ["SaliencyMetrics", "METRIC_CLASSES", "CC", "KLD", "SIM", "NSS", "AUCJudd",
                "AUCBorji", "SAUC", "InfoGain"]
except ImportError:
    pass
