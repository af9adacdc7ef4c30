"""Atomic writes give files and folders the modes a plain ``open``/``mkdir`` would (the umask's), not 0600."""

from __future__ import annotations

import os
import stat

from hf_efftrain.atomic import atomic_directory, write_text


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_file_and_folder_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        plain_file = tmp_path / "plain.txt"
        plain_file.write_text("x")
        plain_dir = tmp_path / "plain"
        plain_dir.mkdir()
        write_text(tmp_path / "atomic.txt", "x")
        with atomic_directory(tmp_path / "folder") as tmp:
            (tmp / "inside.txt").write_text("x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "atomic.txt") == _mode(plain_file) == 0o644
    assert _mode(tmp_path / "folder") == _mode(plain_dir) == 0o755
    assert (tmp_path / "folder" / "inside.txt").read_text() == "x"
