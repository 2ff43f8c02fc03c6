"""Rows into bench/RESULTS.md: each benchmark owns one `## ` section and appends to it."""
from __future__ import annotations

from pathlib import Path


def write_rows(results: Path, title: str, intro: str, header: str, rows: list[str]) -> None:
    """Append `rows` at the end of section `title` (created with `intro` and the table `header`
    when missing), wherever the section stands in the file; the file is replaced atomically."""
    from salnas_core.utils.io import atomic_write_text

    results = Path(results)
    text = results.read_text() if results.exists() else "# Benchmark results\n"
    if title not in text:
        text = text.rstrip("\n") + f"\n\n{title}\n{intro}\n\n{header}\n"
    start = text.index(title)
    nxt = text.find("\n## ", start + len(title))
    end = len(text) if nxt < 0 else nxt
    section = text[start:end].rstrip("\n") + "\n" + "\n".join(rows) + "\n"
    atomic_write_text(results, text[:start] + section + ("\n" + text[end:].lstrip("\n") if nxt >= 0 else ""))
