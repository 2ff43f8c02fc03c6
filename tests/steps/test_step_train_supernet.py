"""Step `train-supernet` through its door: --epochs and --set win over params.yaml, and the run
folder holds what `dvc metrics` and `dvc plots` read."""
from __future__ import annotations

import csv
import json

import pytest

from salnas_core import cli

pytestmark = pytest.mark.timeout(900)


def test_cli_trains_what_it_is_told(tiny_ingested, tmp_path, capsys):
    out = tmp_path / "sn"
    rc = cli.main(["train-supernet", "--data", str(tiny_ingested), "--out", str(out), "--preset", "tiny",
                   "--epochs", "1", "--set", "n_random=1"])
    printed = json.loads(capsys.readouterr().out)
    assert rc == 0 and printed["epochs"] == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 1 and summary["best_epoch"] == 1
    assert all(isinstance(v, float) for v in summary["max"].values()) and "cc" in summary["max"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["params"]["n_random"] == 1 and metrics["params"]["epochs"] == 1
    rows = list(csv.DictReader((out / "plots" / "train.csv").open()))
    assert len(rows) == 1 and {"epoch", "max_score", "min_score", "train_loss"} <= set(rows[0])


def _capture_start(monkeypatch, stop=False):
    """Record the supernet's weights when training starts (SupernetTrainer.fit); `stop`: go no further."""
    from salnas_core.train.trainer import SupernetTrainer

    seen = {}
    fit = SupernetTrainer.fit

    def spy(self, *a, **kw):
        seen.update({k: v.detach().clone() for k, v in self.model.state_dict().items()})
        if stop:
            raise KeyboardInterrupt  # the CLI returns 130: nothing trained, nothing written
        return fit(self, *a, **kw)

    monkeypatch.setattr(SupernetTrainer, "fit", spy)
    return seen


def test_init_supernet_fine_tunes_a_trained_supernet(tiny_ingested, tmp_path, monkeypatch, capsys):
    """The authors' SALICON-then-target protocol: train, then train again starting from that supernet."""
    import torch

    first, second = tmp_path / "first", tmp_path / "second"
    base = ["train-supernet", "--data", str(tiny_ingested), "--preset", "tiny", "--epochs", "1"]
    assert cli.main([*base, "--out", str(first)]) == 0
    trained = torch.load(first / "supernet.pt", weights_only=True)
    seen = _capture_start(monkeypatch)
    assert cli.main([*base, "--out", str(second), "--init-supernet", str(first / "supernet.pt")]) == 0
    assert seen.keys() == trained["state_dict"].keys()
    assert all(torch.equal(seen[k], v) for k, v in trained["state_dict"].items())
    fresh = torch.load(second / "supernet.pt", weights_only=True)
    assert fresh["meta"]["init_supernet"] == str(first / "supernet.pt")
    assert json.loads((second / "metrics.json").read_text())["params"]["init_supernet"] == str(first / "supernet.pt")
    assert not all(torch.equal(fresh["state_dict"][k], v) for k, v in trained["state_dict"].items())  # it trained
    capsys.readouterr()
    # another space, or a file whose tensors differ: one line naming the file, nothing trained
    bad = tmp_path / "bad.pt"
    torch.save({**trained, "state_dict": {k: v for k, v in trained["state_dict"].items() if not k.startswith("head.")}},
               bad)
    for path, extra, why in ((first / "supernet.pt", ["--set", "space=salnas"], "space 'lite'"),
                             (bad, [], "missing head.")):
        rc = cli.main([*base, "--out", str(tmp_path / "x"), "--init-supernet", str(path), *extra])
        err = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
        assert rc == 2 and len(err) == 1 and str(path) in err[0] and why in err[0], err
    assert not (tmp_path / "x" / "supernet.pt").exists()


def test_init_alphanet_starts_the_salnas_encoder_from_the_checkpoint(tiny_ingested, tmp_path, monkeypatch, capsys):
    import torch
    from test_alphanet_init import alphanet_encoder_shapes, write_alphanet

    from salnas_core.spaces.salnas import alphanet_key_map
    from salnas_core.supernet import create_supernet

    ckpt = tmp_path / "alphanet_pretrained.pth.tar"
    src = write_alphanet(ckpt, alphanet_encoder_shapes())
    seen = _capture_start(monkeypatch, stop=True)
    base = ["train-supernet", "--data", str(tiny_ingested), "--out", str(tmp_path / "sn"), "--preset", "tiny"]
    assert cli.main([*base, "--set", "space=salnas", "--init", "alphanet", str(ckpt)]) == 130
    mapping = alphanet_key_map(create_supernet("salnas", pretrained=False))
    assert mapping and all(torch.equal(seen[dst], src["module." + key]) for dst, key in mapping.items())
    capsys.readouterr()
    for extra, why in ((["--init", "alphanet", str(ckpt)], "the `salnas` space only"),     # lite
                       (["--set", "space=salnas", "--init", "imagenet", str(ckpt)], "KIND:PATH"),
                       (["--set", "space=salnas", "--init", "alphanet", str(ckpt), "--init-supernet", str(ckpt)],
                        "not both")):
        rc = cli.main([*base, *extra])
        err = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
        assert rc == 2 and len(err) == 1 and why in err[0], err
