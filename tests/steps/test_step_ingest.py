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


def test_a_folder_of_datasets_is_ingested_dataset_by_dataset(osie_subset_dir, synthetic_source, tmp_path, capsys):
    """The snapshot's data/raw holds the training set and the cross-datasets: each is ingested into
    OUT/<its name>, the same as ingesting it alone."""
    import shutil

    raw = tmp_path / "raw"
    shutil.copytree(osie_subset_dir, raw / "osie", symlinks=True)
    shutil.copytree(synthetic_source, raw / "synthetic")
    params = tmp_path / "params.yaml"
    params.write_text("ingest:\n  working_size: [24, 32]\n")
    rc = cli.main(["ingest", "--source", str(raw), "--format", "shared_json", "--out", str(tmp_path / "all"),
                   "--params", str(params)])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0 and [d["dataset"] for d in summary["datasets"]] == ["osie", "synthetic"]
    alone = cli.main(["ingest", "--source", str(osie_subset_dir), "--format", "shared_json",
                      "--out", str(tmp_path / "alone"), "--params", str(params)])
    capsys.readouterr()
    assert alone == 0
    assert load_manifest(tmp_path / "all" / "osie")["version"] == load_manifest(tmp_path / "alone" / "osie")["version"]
    assert load_manifest(tmp_path / "all" / "synthetic")["synthetic"] is True
    # --name names one dataset: refused in one line for a folder of them
    rc = cli.main(["ingest", "--source", str(raw), "--format", "shared_json", "--out", str(tmp_path / "x"),
                   "--params", str(params), "--name", "foo"])
    assert rc == 2 and "--name names one dataset; this folder holds 2 (osie, synthetic)" in capsys.readouterr().err
