"""FiWI (Shen & Zhao, "Webpage Saliency", ECCV 2014): 149 webpage screenshots, 11 viewers.

Layout followed (NUS-VIP release; the same lab's struct format as OSIE): ROOT/stimuli/*.png and
ROOT/fixations.mat (or ROOT/eye/fixations.mat) holding `fixations`, a cell of structs
{img, subjects{fix_x, fix_y, fix_duration}} with MATLAB 1-based coordinates. This layout could
not be checked against the release offline; see docs/datasets.md.
"""
from __future__ import annotations

from pathlib import Path

from .base import ReadResult, first_existing, register_reader
from .osie import read_nus_struct_mat


@register_reader("fiwi", dataset="fiwi")
def read_fiwi(root: Path) -> ReadResult:
    root = Path(root)
    mat = first_existing(root, ("fixations.mat", "eye/fixations.mat"), "FiWI fixations.mat")
    stimuli = first_existing(root, ("stimuli", "Stimuli"), "stimuli/ folder")
    return read_nus_struct_mat(mat, stimuli)
