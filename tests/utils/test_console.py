"""A quiet console: one progress line for training, no printed log dicts, no library warnings; --verbose brings them."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from support import env, nlft_cmd, sample_records

from nlft.train.progress import format_logs


def clean_env() -> dict[str, str]:
    """The subprocess environment without what an in-process ``nlft`` call of an earlier test set to quiet libraries."""
    from nlft.utils.console import QUIET_ENV

    return {k: v for k, v in env().items() if k not in QUIET_ENV}


NOISE = ("Warning", "deprecated", "{'loss'", "Loading weights", "pin_memory")


def test_format_logs_shows_loss_and_token_shares():
    assert format_logs({"loss": 0.41234, "nlft/saliency_share": 0.314, "nlft/erroneous_share": 0.08, "epoch": 1}) == (
        "loss 0.4123, saliency 31%, erroneous 8%")
    assert format_logs({"grad_norm": 1.0}) == ""


@pytest.mark.slow
def test_train_console_is_one_progress_line(tmp_path, tiny_dir):
    data = tmp_path / "nlft.jsonl"
    data.write_text("".join(json.dumps({**r, "id": f"r{i}"}) + "\n" for i, r in enumerate(sample_records())))
    argv = ["train", "--model", str(tiny_dir), "--data", str(data), "--max-steps", "2", "--batch-size", "2"]
    quiet = subprocess.run(nlft_cmd(*argv, "--out", str(tmp_path / "a")), env=clean_env(), capture_output=True,
                           text=True, timeout=300)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert quiet.stdout == ""
    err = quiet.stderr
    for noise in NOISE:
        assert noise not in err, (noise, err)
    # the bar's last state: steps done, the loss and the token shares of the last log
    last = err.replace("\r", "\n").strip().splitlines()
    bar = [line for line in last if line.startswith("nlft: 100%")][-1]
    assert "2/2" in bar and re.search(r"loss [-\d.e]+, saliency \d+%", bar), bar
    assert last[-1].startswith("nlft train: nlft done ->")

    loud = subprocess.run(nlft_cmd(*argv, "--out", str(tmp_path / "b"), "--verbose"), env=clean_env(),
                          capture_output=True, text=True, timeout=300)
    assert loud.returncode == 0, loud.stderr[-3000:]
    shown = loud.stdout + loud.stderr
    assert "'loss'" in shown and "'nlft/nll'" in shown and "Loading weights" in shown  # the libraries' own output
