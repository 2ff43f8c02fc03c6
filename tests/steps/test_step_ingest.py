"""Step `ingest` through its door: params.yaml values, --set, the summary on stdout."""
from __future__ import annotations

import json

from salnas_core import cli
from salnas_core.data.dataset import load_manifest


def test_cli_takes_params_then_set_and_prints_the_summary(osie_subset_dir, tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("ingest:\n  working_size: [24, 32]\n  seed: 7\n  limit: 3\n")
    rc = cli.main(["ingest", "--source", str(osie_subset_dir), "--format", "shared_json", "--out", str(tmp_path / "a"),
                   "--params", str(params), "--set", "seed=9"])
    summary = json.loads(capsys.readouterr().out)
    man = load_manifest(summary["out"])
    assert rc == 0 and summary["images"] == 3
    assert man["working_size"] == [24, 32] and man["seed"] == 9
    # --limit on the command line wins over params ingest.limit
    rc = cli.main(["ingest", "--source", str(osie_subset_dir), "--format", "shared_json", "--out", str(tmp_path / "b"),
                   "--params", str(params), "--limit", "2"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["images"] == 2
