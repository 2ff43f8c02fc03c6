"""Step `variants`: the budgets the search met, in the order asked (the pipeline's loop items)."""
from __future__ import annotations

import json

from salnas_core import cli
from salnas_core.steps import variants
from salnas_core.utils.io import atomic_write_json


def test_names_in_the_order_asked_and_written_for_kfp(tmp_path, capsys):
    atomic_write_json(tmp_path / "search" / "variants.json", {"XL": {"config": {}}, "S": {"config": {}}})
    assert variants.run(str(tmp_path / "search"), ["S", "M", "XL"]) == {"names": ["S", "XL"]}
    assert variants.run(str(tmp_path / "search")) == {"names": ["XL", "S"]}
    out = tmp_path / "kfp" / "names"
    rc = cli.main(["variants", "--search", str(tmp_path / "search"), "--budgets", "[XL]", "--names-out", str(out)])
    assert rc == 0 and json.loads(out.read_text()) == ["XL"] and json.loads(capsys.readouterr().out) == ["XL"]


def test_user_mistakes_are_one_line(tmp_path, capsys):
    atomic_write_json(tmp_path / "search" / "variants.json", {"XL": {"config": {}}})
    for argv, want in ((["--budgets", "[M]"], "none of the budgets ['M']"),
                       (["--budgets", "XL"], "expected a list of names")):
        rc = cli.main(["variants", "--search", str(tmp_path / "search"), *argv])
        err = capsys.readouterr().err
        assert rc == 2 and want in err and len(err.strip().splitlines()) == 1, err
