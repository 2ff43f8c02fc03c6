"""`salnas variants`: the variants a search found, of the budgets asked for (the pipeline's
ParallelFor items). A pipeline step."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from salnas_core.errors import UserError

log = logging.getLogger(__name__)


def run(search: str, budgets: list[str] | None = None) -> dict[str, list[str]]:
    """{"names": names in SEARCH/variants.json}, in the order of `budgets` (those the search could
    not meet are left out with a warning); all of them when `budgets` is empty."""
    from salnas_core import artifacts

    if budgets is not None and not (isinstance(budgets, list) and all(isinstance(b, str) for b in budgets)):
        raise UserError(f"--budgets: expected a list of names like '[XL, M]', got {budgets!r}")
    path = Path(search) / artifacts.VARIANTS
    table = artifacts.read_variants(path)
    names = [b for b in budgets if b in table] if budgets else list(table)
    missing = [b for b in budgets or [] if b not in table]
    if missing:
        log.warning("variants: budgets %s have no variant in %s (limits below the smallest subnet?)", missing, path)
    if not names:
        raise UserError(f"{path}: none of the budgets {budgets} has a variant (have: {', '.join(table)})")
    return {"names": names}


def summarize(result: dict[str, list[str]]) -> str:
    return json.dumps(result["names"])
