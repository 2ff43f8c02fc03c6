"""`salnas report`: one self-contained HTML page, checked in a real headless Chromium."""
from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from salnas_core.serve.report import run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
METRICS = ("cc", "kld", "nss", "sim", "auc_judd", "sauc", "ig")


class _Page(HTMLParser):
    """Tables (caption, header cells, body rows) and images of a DOM dump."""

    def __init__(self):
        super().__init__()
        self.tables: list[dict] = []
        self.images: list[dict] = []
        self.notes: list[str] = []
        self._cell: list[str] | None = None
        self._in_note = False
        self._where = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.tables.append({"class": a.get("class"), "caption": "", "head": [], "rows": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th", "caption"):
            self._cell, self._where = [], tag
        elif tag == "img":
            self.images.append(a)
        elif tag == "div" and a.get("class") == "note":
            self._in_note = True
            self.notes.append("")

    def handle_endtag(self, tag):
        if tag in ("td", "th", "caption") and self._cell is not None:
            text = "".join(self._cell).strip()
            t = self.tables[-1]
            if tag == "caption":
                t["caption"] = text
            elif tag == "th" and len(t["rows"]) == 1:
                t["head"].append(text)
            else:
                t["rows"][-1].append(text)
            self._cell = None
        elif tag == "div":
            self._in_note = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._in_note:
            self.notes[-1] += data


def _chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={tmp / 'chrome-profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


@pytest.fixture(scope="module")
def pipeline_outputs(tmp_path_factory, lite_model):
    """What evaluate and search write, in the formats of steps.evaluate (metrics.json {"rows"},
    efficiency.json {"input_size", "rows"}) and steps.search (pareto.json fronts, variants.json,
    a real plot_pareto figure), for two variants; values are random, the page must show them."""
    from salnas_core.search.pareto import pareto_front, plot_pareto

    root = tmp_path_factory.mktemp("runs")
    ev, se = root / "evaluate", root / "search"
    ev.mkdir()
    se.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for ds in ("osie", "nus_scene"):
        for model in ("centre_bias", "S", "XL"):
            m = {k: float(rng.uniform(0.3, 0.9)) for k in METRICS}
            rows.append({"dataset": ds, "split": "test", "model": model, "blur": False, "trained_on": "osie",
                         "cross": ds != "osie" and model != "centre_bias", "n": 70, **m, "score": float(rng.uniform(2, 4))})
    (ev / "metrics.json").write_text(json.dumps({"rows": rows}))
    eff = [{"model": name, "device": "cpu", "device_name": "test CPU", "torch": "2.13.0", "input_size": [288, 384],
            "params": p, "macs": mac, "mparams": p / 1e6, "gmacs": mac / 1e9, "size_mb_fp32": p * 4e-6,
            "size_mb_fp16": p * 2e-6, "latency_ms_b1": lat, "throughput_ips_b32": 1000 / lat, "peak_mem_mb": 80.0,
            "energy_j_per_1000": lat * 8, "co2_g_per_1000": lat * 8 / 3.6e6 * 475, "energy_method": "estimate"}
           for name, p, mac, lat in (("S", 2.6e6, 0.4e9, 21.0), ("XL", 6.1e6, 1.2e9, 64.0))]
    (ev / "efficiency.json").write_text(json.dumps({"input_size": [288, 384], "rows": eff}))  # as steps.evaluate
    cands = [{"config": {"i": i}, "score": float(s), "macs": float(m), "params": 1e6, "latency_ms": float(m / 2e7)}
             for i, (s, m) in enumerate(zip(rng.uniform(2, 4, 30), rng.uniform(3e8, 1.5e9, 30)))]
    variants = {"S": min(cands, key=lambda c: c["macs"]), "XL": min(cands, key=lambda c: c["score"])}
    plot_pareto(cands, se / "pareto.png", chosen=variants)
    (se / "pareto.json").write_text(json.dumps({"front_macs": pareto_front(cands, "macs"),
                                                "front_latency_ms": pareto_front(cands, "latency_ms"), "space": "lite"}))
    (se / "variants.json").write_text(json.dumps(variants))
    for v in variants:  # distilled models where the pipeline puts them
        (root / "distill" / v).mkdir(parents=True)
        shutil.copy(lite_model, root / "distill" / v / "model.pt")
    return {"evaluate": ev, "search": se, "rows": rows, "eff": eff, "front": pareto_front(cands, "macs")}


@pytest.fixture(scope="module")
def report(pipeline_outputs, tiny_ingested, tmp_path_factory):
    from salnas_core.cli import main

    out = tmp_path_factory.mktemp("report") / "report.html"
    rc = main(["report", "--evaluate", str(pipeline_outputs["evaluate"]), "--search", str(pipeline_outputs["search"]),
               "--data", str(tiny_ingested), "--samples", "2", "--device", "cpu", "--out", str(out)])
    assert rc == 0
    return out


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/install-chromium)")
def test_report_in_headless_chromium(report, pipeline_outputs, tmp_path):
    r = _chromium("--dump-dom", report.resolve().as_uri(), tmp=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    page = _Page()
    page.feed(r.stdout)
    assert not page.notes, page.notes  # every input was there
    metric_tables = [t for t in page.tables if t["class"] == "metrics"]
    assert len(metric_tables) == 2  # one per dataset
    for t in metric_tables:
        ds = t["caption"].split()[0]
        assert t["head"][:2] == ["model", "CC ↑"] and "KLD ↓" in t["head"]
        want = [r for r in pipeline_outputs["rows"] if r["dataset"] == ds]
        assert len(t["rows"]) - 1 == len(want)
        for row, w in zip(t["rows"][1:], want):
            assert row[0].startswith(w["model"]) and row[1] == f"{w['cc']:.3f}"
    eff = next(t for t in page.tables if t["class"] == "efficiency")
    assert [r[0] for r in eff["rows"][1:]] == ["S", "XL"]
    assert eff["rows"][1][eff["head"].index("latency b1 (ms)")] == "21.0"
    variants = next(t for t in page.tables if t["class"] == "variants")
    assert [r[0] for r in variants["rows"][1:]] == ["S", "XL"]
    # pictures: the Pareto plot and, per sample, image + human map + one map per variant
    srcs = [im["src"] for im in page.images]
    assert all(s.startswith("data:image/png;base64,") for s in srcs)  # self-contained
    decoded = [Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1]))) for s in srcs]
    plot = decoded[0]
    assert page.images[0]["alt"] == "Pareto plot" and plot.size == Image.open(pipeline_outputs["search"] / "pareto.png").size
    samples = page.images[1:]
    assert len(samples) == 2 * (2 + 2)
    assert [s["alt"].split()[0] for s in samples[:4]] == ["image", "human", "S", "XL"]
    for im in decoded[1:]:
        a = np.asarray(im.convert("RGB"), dtype=np.float64)
        assert a.std() > 1.0  # a picture, not a blank tile

    shot = tmp_path / "report.png"
    r = _chromium(f"--screenshot={shot}", "--window-size=1280,2200", "--hide-scrollbars", report.resolve().as_uri(), tmp=tmp_path)
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    px = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
    assert px.shape[:2] == (2200, 1280) and px.std() > 20  # rendered content, not an empty page


def test_missing_parts_are_reported(pipeline_outputs, tmp_path):
    ev = tmp_path / "evaluate"
    ev.mkdir()
    shutil.copy(pipeline_outputs["evaluate"] / "metrics.json", ev / "metrics.json")  # efficiency.json missing
    s = run(ev, pipeline_outputs["search"], tmp_path / "r.html")
    text = (tmp_path / "r.html").read_text()
    assert s["metric_rows"] == len(pipeline_outputs["rows"]) and s["efficiency_rows"] == 0
    assert f"{ev / 'efficiency.json'} is missing" in text and "salnas evaluate" in text


def test_missing_folder_is_an_error(pipeline_outputs, tmp_path, capsys):
    from salnas_core.cli import main

    rc = main(["report", "--evaluate", str(pipeline_outputs["evaluate"]), "--search", str(tmp_path / "nope"),
               "--out", str(tmp_path / "r.html")])
    assert rc == 2 and not (tmp_path / "r.html").exists()
    err = capsys.readouterr().err
    assert "nope: folder not found" in err and "salnas search" in err
