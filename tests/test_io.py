"""Atomic writes: complete or absent, and no leftovers of killed writers."""
import json

import pytest

from sopcorr.io import atomic_path, write_json


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_next_write_removes_leftovers_of_a_killed_writer(tmp_path):
    # what SIGKILL leaves: the writer's hidden temporary folder with a partial artifact
    stale = tmp_path / ".table.csv.abc123.tmp"
    (stale / "table.csv").parent.mkdir()
    (stale / "table.csv").write_text("partial")
    other = tmp_path / ".other.csv.x.tmp"          # another artifact's writer: left alone
    other.mkdir()
    write_json(tmp_path / "table.csv", {"a": 1})
    assert json.loads((tmp_path / "table.csv").read_text()) == {"a": 1}
    assert not stale.exists() and other.exists()


def test_names_with_glob_characters_are_matched_literally(tmp_path):
    keep = tmp_path / ".a1.json.z.tmp"             # would match the pattern of "a[1].json" unescaped
    keep.mkdir()
    write_json(tmp_path / "a[1].json", [1])
    assert keep.exists()
