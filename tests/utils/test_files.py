"""Files written atomically get the mode any new file gets: 0666 less the umask, not a temporary file's 0600."""

from __future__ import annotations

import os
import stat

import pytest

from nlft.utils.files import atomic_write_json, atomic_write_text


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "config.yaml", "a: 1\n")
        atomic_write_json(tmp_path / "manifest.json", {"a": 1})
        (tmp_path / "plain.txt").write_text("x")  # what open() gives, for comparison
    finally:
        os.umask(old)
    for name in ("config.yaml", "manifest.json", "plain.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
    assert (tmp_path / "config.yaml").read_text() == "a: 1\n"


def test_saved_weights_respect_the_umask(tmp_path, tiny_model):
    """safetensors writes the weights through a temporary file (0600); respect_umask gives them 0666 less the umask."""
    from nlft.utils.files import respect_umask

    old = os.umask(0o022)
    try:
        tiny_model.save_pretrained(tmp_path / "model")
        respect_umask(tmp_path / "model")
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "model").rglob("*") if p.is_file()]
    assert any(p.suffix == ".safetensors" for p in files)
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o644}
