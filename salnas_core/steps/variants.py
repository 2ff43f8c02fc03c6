"""`salnas variants`: the variants a search found, of the budgets asked for (the pipeline's
ParallelFor items). A pipeline step; `salnas pipeline variants` is the same command."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def run(search: str, budgets: list[str] | None = None) -> list[str]:
    """Names in SEARCH/variants.json, in the order of `budgets` (those the search could not meet are
    left out with a warning); all of them when `budgets` is empty."""
    from salnas_core.utils.io import read_json

    path = Path(search) / "variants.json"
    table = read_json(path)
    if not isinstance(table, dict) or not table:
        raise ValueError(f"{path}: no variants (the search met none of the budgets {budgets or ''})")
    names = [b for b in budgets if b in table] if budgets else list(table)
    missing = [b for b in budgets or [] if b not in table]
    if missing:
        log.warning("variants: budgets %s have no variant in %s (limits below the smallest subnet?)", missing, path)
    if not names:
        raise ValueError(f"{path}: none of the budgets {budgets} has a variant (have: {', '.join(table)})")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--search", required=True, help="search output folder (variants.json)")
    parser.add_argument("--budgets", default=None, help="JSON/YAML list of the budgets asked for")
    parser.add_argument("--names-out", default=None, help="file to write the JSON list into (a KFP output)")


def run_cli(args: argparse.Namespace) -> int:
    import yaml

    from salnas_core.utils.io import atomic_write_text
    from salnas_core.utils.logs import setup_logging

    setup_logging()
    try:
        budgets = yaml.safe_load(args.budgets) if args.budgets else None
        if budgets is not None and not isinstance(budgets, list):
            raise ValueError(f"--budgets: expected a list like '[XL, M]', got {args.budgets!r}")
        names = run(args.search, budgets)
    except (FileNotFoundError, ValueError) as e:
        print(f"salnas variants: {e}", file=sys.stderr)
        return 1
    if args.names_out:
        atomic_write_text(args.names_out, json.dumps(names))
    print(json.dumps(names))
    return 0
