"""The command line's shell: one vocabulary, old names accepted for one release, one-line errors."""

from __future__ import annotations

import pytest

from nlft.cli import build_parser, is_user_error, main


def test_eval_reads_questions_from_dataset_and_still_accepts_data(capsys):
    parser = build_parser()
    assert parser.parse_args(["eval", "--dataset", "chain_sum"]).data == "chain_sum"
    assert capsys.readouterr().err == ""
    assert parser.parse_args(["eval", "--data", "chain_sum"]).data == "chain_sum"
    assert "--data is now --dataset" in capsys.readouterr().err


def test_library_errors_become_one_line(tmp_path, capsys):
    from nlft.data.generation import APIError
    from nlft.utils.files import DataError

    assert all(is_user_error(e) for e in (DataError("x"), ValueError("x"), FileNotFoundError("x"), APIError("x")))
    assert not is_user_error(KeyError("x"))
    # a missing optional dependency says what to install; any other ImportError is a bug
    assert is_user_error(ImportError("the math task needs math-verify: pip install 'nlft[tasks]'"))
    assert not is_user_error(ImportError("cannot import name 'x' from 'y'"))
    assert main(["judge", "--input", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nlft judge: error: ") and err.count("\n") == 1 and "input file not found" in err


@pytest.mark.parametrize("command", ["train", "eval", "saliency", "generate", "prepare", "quickstart"])
def test_every_command_takes_out_and_model(command):
    flags = {a.option_strings[0] for a in build_parser()._subparsers._group_actions[0].choices[command]._actions
             if a.option_strings}
    assert {"--out", "--model"} <= flags
