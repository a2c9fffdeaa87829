"""atomic_write_text: all of the new text or none of it, and no temporary file left behind."""

from __future__ import annotations

import pytest

from rewardlab.data.files import atomic_write_text


def test_atomic_write_replaces_whole_and_leaves_the_old_file_on_failure(tmp_path):
    target = tmp_path / "new" / "dir" / "out.json"
    assert atomic_write_text(target, "first") == target and target.read_text() == "first"
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    with pytest.raises(TypeError):
        atomic_write_text(target, None)  # fails while writing
    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]
