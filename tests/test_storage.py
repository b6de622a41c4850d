"""Local atomic writes: whole files or none, no temporaries left behind."""

import os

import pytest

from herdcount import storage


def test_write_files_atomic_writes_whole_files_and_cleans_up_after_a_failure(tmp_path):
    folder = tmp_path / "thumbnails" / "pups"  # made on the way
    storage.write_files_atomic(folder, [("a.jpg", b"a" * 5000), ("b.jpg", b"")])
    assert sorted(os.listdir(folder)) == ["a.jpg", "b.jpg"]
    assert (folder / "a.jpg").read_bytes() == b"a" * 5000
    assert (folder / "a.jpg").stat().st_mode & 0o777 == 0o644 & ~_umask()

    # The second file fails after its temporary file was opened: the first stays whole,
    # the second leaves nothing, not even its temporary.
    with pytest.raises(TypeError):
        storage.write_files_atomic(folder, [("c.jpg", b"c"), ("d.jpg", "not bytes")])
    assert sorted(os.listdir(folder)) == ["a.jpg", "b.jpg", "c.jpg"]

    storage.write_bytes_atomic(folder / "a.jpg", b"new")
    assert (folder / "a.jpg").read_bytes() == b"new"
    assert sorted(os.listdir(folder)) == ["a.jpg", "b.jpg", "c.jpg"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
