"""Atomic writes leave either the old file or the complete new one, never a partial file or a temporary."""

import json
import os
import stat

import pytest

from context_forcing.io import atomic_write, atomic_write_json, atomic_write_text, check_writable

needs_permissions = pytest.mark.skipif(os.geteuid() == 0, reason="root bypasses directory permissions")


def entries(directory):
    return sorted(p.name for p in directory.iterdir())


def test_atomic_write_renames_on_success_and_keeps_the_suffix(tmp_path):
    target = tmp_path / "out.mp4"
    with atomic_write(target) as temp:
        assert temp.parent == tmp_path and temp.name.startswith(".") and temp.suffix == ".mp4"
        assert not target.exists()
        temp.write_bytes(b"data")
    assert target.read_bytes() == b"data"
    assert entries(tmp_path) == ["out.mp4"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_atomic_write_removes_temp_and_keeps_old_file_on_error(tmp_path, error):
    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(error):
        with atomic_write(target) as temp:
            temp.write_text("partial")
            raise error()
    assert target.read_text() == "old"
    assert entries(tmp_path) == ["report.json"]


def test_atomic_write_creates_missing_parents(tmp_path):
    target = tmp_path / "a" / "b" / "x.txt"
    atomic_write_text(target, "hello")
    assert target.read_text() == "hello"


def test_atomic_write_uses_normal_permissions(tmp_path):
    target = tmp_path / "x.txt"
    atomic_write_text(target, "x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_atomic_write_json_format(tmp_path):
    target = tmp_path / "r.json"
    atomic_write_json(target, {"a": [1, 2], "b": "c"})
    text = target.read_text()
    assert text == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": "c"\n}\n'
    assert json.loads(text) == {"a": [1, 2], "b": "c"}


def test_check_writable_accepts_new_file_and_missing_parents_without_creating_them(tmp_path):
    assert check_writable(tmp_path / "x.mp4") == tmp_path / "x.mp4"
    assert check_writable(tmp_path / "new" / "dir" / "x.mp4") == tmp_path / "new" / "dir" / "x.mp4"
    assert entries(tmp_path) == []


def test_check_writable_rejects_a_directory(tmp_path):
    with pytest.raises(ValueError, match=rf"{tmp_path}.*is a directory"):
        check_writable(tmp_path)


def test_check_writable_rejects_a_file_in_the_parent_chain(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match=r"file/sub/x.mp4.*exists and is not a directory"):
        check_writable(tmp_path / "file" / "sub" / "x.mp4")


def test_check_writable_reports_the_denied_directory(tmp_path, monkeypatch):
    # Simulated denial, so this runs as root too (root bypasses permission bits).
    monkeypatch.setattr(os, "access", lambda path, mode: path != tmp_path)
    with pytest.raises(ValueError, match=rf"x.mp4.*its directory '{tmp_path}' is not writable"):
        check_writable(tmp_path / "x.mp4")


@needs_permissions
def test_check_writable_rejects_a_read_only_directory(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ValueError, match=r"locked/x.mp4.*its directory .* is not writable"):
            check_writable(locked / "x.mp4")
        with pytest.raises(ValueError, match=r"nearest existing ancestor .*locked.* is not writable"):
            check_writable(locked / "missing" / "x.mp4")
    finally:
        locked.chmod(0o700)
