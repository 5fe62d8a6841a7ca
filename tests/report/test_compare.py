"""`nlft compare`: table and overlay plot of several run directories."""

from __future__ import annotations

import json

from support import png_size, write_run

from nlft.cli import main
from nlft.report.plots import plot_compare


def test_compare_prints_table_and_writes_png(tmp_path, capsys):
    nlft = write_run(tmp_path / "nlft", method="nlft")
    manifest = json.loads((nlft / "manifest.json").read_text())
    manifest["drift_monitor"] = {"fired": True, "stopped": True, "epoch": 2.4, "nll_ratio": 2.31, "max_nll_ratio": 2.31}
    manifest["kept"] = {"keep": "best", "epoch": 2.0, "global_step": 100, "metric": "accuracy_flexible"}
    (nlft / "manifest.json").write_text(json.dumps(manifest))
    (nlft / "metrics.json").write_text(json.dumps({"accuracy_strict": 0.55, "n": 20, "ci95_strict": [0.3421, 0.7418],
                                                   "accuracy_flexible": 0.6, "ci95_flexible": [0.387, 0.781]}))
    sft = write_run(tmp_path / "sft", losses=(2.0, 1.0, 0.5, 0.2), accuracies=(0.3, 0.2), method="sft",
                    with_metrics=False)
    empty = tmp_path / "crashed"
    empty.mkdir()
    out = tmp_path / "cmp" / "compare.png"
    code = main(["compare", str(nlft), str(sft), str(empty), "--out", str(out), "--json", str(tmp_path / "t.json")])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["run", "method", "data", "graded", "final", "loss", "strict", "95%", "CI", "flexible",
                                "95%", "CI", "wall", "time", "peak", "memory", "drift", "kept"]
    # the monitor fired and stopped the NLFT run at epoch 2.4; --keep best kept epoch 2
    assert lines[2].split() == ["nlft", "nlft", "-", "0.9000", "55.00%", "34.2-74.2%", "60.00%", "38.7-78.1%", "2.1",
                                "min", "3.00", "GiB", "stopped", "e2.4", "(2.31x)", "e2", "(best)"]
    # no metrics.json: the last epoch's evaluation, strict and flexible
    assert lines[3].split() == ["sft", "sft", "-", "0.2000", "20.00%", "-", "25.00%", "-", "2.1", "min", "3.00", "GiB",
                                "-", "-"]
    assert lines[4].split() == ["crashed", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-"]
    assert lines[5] == f"plot: {out}"
    assert png_size(out) == (1232, 440)
    table = json.loads((tmp_path / "t.json").read_text())
    assert [r["accuracy"] for r in table] == [0.55, 0.2, None]
    assert table[0]["ci95_flexible"] == [0.387, 0.781] and table[0]["kept"]["epoch"] == 2.0
    assert table[0]["drift"]["stopped"] is True and table[1]["drift"] is None


def test_compare_labels_and_errors(tmp_path, capsys):
    a = write_run(tmp_path / "a")
    assert main(["compare", str(a), "--labels", "x", "y", "--out", str(tmp_path / "c.png")]) == 2
    assert "--labels has 2 names for 1 runs" in capsys.readouterr().err
    assert main(["compare", str(a), str(tmp_path / "missing")]) == 2
    assert "missing: not a run directory" in capsys.readouterr().err
    assert plot_compare([a], tmp_path / "l.png", labels=["NLFT (ours)"]) == tmp_path / "l.png"


def test_compare_with_nothing_to_draw(tmp_path, capsys):
    empty = tmp_path / "e"
    empty.mkdir()
    assert main(["compare", str(empty), "--out", str(tmp_path / "c.png")]) == 0
    assert "nothing to draw" in capsys.readouterr().out
    assert not (tmp_path / "c.png").exists()


def test_compare_shows_flexible_accuracy_and_the_grading_of_each_run(tmp_path, capsys):
    """A run at 0% strict and 33% flexible reads as such, with how its training outputs were graded."""
    data = tmp_path / "nlft.jsonl"
    data.write_text(json.dumps({"id": "a", "provenance": {"judge": {"kind": "rule", "grading": "flexible"}}}) + "\n")
    runs = []
    for name, grading in (("new", "strict"), ("old", None)):
        run = write_run(tmp_path / name, accuracies=())
        manifest = json.loads((run / "manifest.json").read_text())
        manifest["data"] = {"path": str(data), "rows": 1, **({"grading": grading} if grading else {})}
        (run / "manifest.json").write_text(json.dumps(manifest))
        (run / "metrics.json").write_text(json.dumps({"accuracy_strict": 0.0, "accuracy_flexible": 1 / 3, "n": 30,
                                                      "n_correct_strict": 0, "n_correct_flexible": 10}))
        runs.append(run)
    assert main(["compare", *map(str, runs), "--out", str(tmp_path / "c.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].split()[:8] == ["new", "nlft", "strict", "0.9000", "0.00%", "0.0-11.4%", "33.33%", "19.2-51.2%"]
    assert lines[3].split()[:3] == ["old", "nlft", "flexible"]  # read from the data file's provenance
