"""``benchmarks/epoch_cost.py`` on the tiny model: its report is consistent with its own epoch marks."""

from __future__ import annotations

import json
import sys

import pytest
from support import REPO, needs_gsm8k

sys.path.insert(0, str(REPO / "benchmarks"))


@needs_gsm8k
@pytest.mark.slow  # two configurations trained for two epochs
def test_epoch_cost_reads_shorter_runs_at_epoch_ends(tmp_path, tokenizer):
    import epoch_cost

    out = tmp_path / "epoch.json"
    assert epoch_cost.main(["--model", "tiny", "--examples", "6", "--epochs", "1", "2", "--threads", "1",
                            "--configs", "sft", "nlft_cached", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["method"] == "one 2-epoch run, read at epoch ends"
    for config in ("sft", "nlft_cached"):
        marks = report["epoch_marks"][config]["2"]
        assert len(marks) == 2 and 0 < marks[0] < marks[1]
        assert report["runs"]["1"][config] == marks[0]
        assert report["runs"]["2"][config] == marks[1]
    for epochs in ("1", "2"):
        runs = report["runs"][epochs]
        assert report["ratios"][epochs]["nlft_cached_vs_sft"] == pytest.approx(runs["nlft_cached"] / runs["sft"])
    assert report["target_cached_10_epochs"]["value"] is None  # no 10-epoch run asked for
