import pytest

from pipeline.io import atomic_path


def test_atomic_file_appears_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary left behind
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole"


def test_atomic_directory_replaces_old_output_only_on_success(tmp_path):
    target = tmp_path / "store"
    with atomic_path(target, directory=True) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_path(target, directory=True) as tmp:
            (tmp / "b").write_text("2")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    assert [p.name for p in tmp_path.iterdir()] == ["store"]


def test_leftovers_of_a_killed_write_are_removed_by_the_next_one(tmp_path):
    from pipeline.io import atomic_path

    (tmp_path / ".out.parquet.tmp-abc123").write_text("half written")  # a file write killed with -9
    (tmp_path / ".store.tmp-xyz").mkdir()  # a folder write killed with -9
    (tmp_path / ".store.tmp-xyz" / "maps.npy").write_text("half")
    (tmp_path / ".other.tmp-keep").write_text("another target's")
    with atomic_path(tmp_path / "out.parquet") as tmp:
        tmp.write_text("done")
    with atomic_path(tmp_path / "store", directory=True) as tmp:
        (tmp / "maps.npy").write_text("done")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp-keep", "out.parquet", "store"]
