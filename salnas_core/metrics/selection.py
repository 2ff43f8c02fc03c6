"""The single number used to rank models (lower is better)."""
from __future__ import annotations

import math
from typing import Mapping

__all__ = ["selection_score", "SELECTION_KEYS"]

SELECTION_KEYS = ("cc", "kld", "nss", "sim", "auc_judd")


def selection_score(m: Mapping[str, float]) -> float:
    """(1 - CC) + KLD + (1 - sigmoid(NSS)) + (1 - SIM) + (1 - AUC_Judd), from a metric dict with
    keys cc, kld, nss, sim, auc_judd (extra keys ignored). Lower is better."""
    missing = [k for k in SELECTION_KEYS if k not in m]
    if missing:
        raise KeyError(f"selection_score needs metric keys {SELECTION_KEYS}; missing {missing}")
    nss = float(m["nss"])
    sig = 1.0 / (1.0 + math.exp(-nss)) if nss >= 0 else math.exp(nss) / (1.0 + math.exp(nss))
    return ((1.0 - float(m["cc"])) + float(m["kld"]) + (1.0 - sig)
            + (1.0 - float(m["sim"])) + (1.0 - float(m["auc_judd"])))
