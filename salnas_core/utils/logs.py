"""Logging set-up, the one home: every CLI entry calls `setup_logging()` once."""
from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIET = ("urllib3", "botocore", "boto3", "s3transfer", "alembic", "git", "numba", "matplotlib", "PIL")


def setup_logging(verbose: bool = False) -> None:
    """INFO (DEBUG when `verbose`) to stderr with one format; noisy libraries stay at WARNING.
    A no-op for handlers when the root logger is already configured (as in tests or a host app)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=FORMAT, datefmt="%H:%M:%S")
    if verbose:
        logging.getLogger().setLevel(logging.DEBUG)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)


def show_progress(requested: bool = True) -> bool:
    """Progress bars only when asked for and stderr is a terminal (logs and CI get none)."""
    try:
        return bool(requested) and sys.stderr.isatty()
    except (AttributeError, ValueError):  # closed or replaced stderr
        return False
