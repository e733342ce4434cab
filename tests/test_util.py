"""Atomic writes (lowbit.sw.util): a failure at any point keeps the previous output whole."""

import os

import pytest

from lowbit.sw import util
from lowbit.sw.util import atomic_path, replace_folder, write_atomic, write_files


def is_previous(p):
    return (p / "manifest.json").is_file()


def put(target, files):
    return replace_folder(target, files, is_previous=is_previous, what="a previous test output")


def tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


OLD = {"manifest.json": b"old\n", "a.hex": b"00\n"}
NEW = {"manifest.json": "new\n", "sub/b.bin": b"\x01\x02"}


def test_new_folder_from_a_dict_and_from_a_callback(tmp_path):
    put(tmp_path / "out", NEW)
    assert tree(tmp_path / "out") == {"manifest.json": b"new\n", "sub/b.bin": b"\x01\x02"}

    def fill(stage):
        assert stage.parent == tmp_path and stage.name.startswith(".out.tmp-")  # staged beside the target
        (stage / "manifest.json").write_text("cb\n")

    put(tmp_path / "out", fill)
    assert tree(tmp_path / "out") == {"manifest.json": b"cb\n"}  # the previous files are gone
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_output_folder_and_files_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    put(tmp_path / "out", NEW)
    write_atomic(tmp_path / "f.txt", "x")
    # not the 0700 / 0600 of tempfile.mkdtemp / mkstemp
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o777 & ~umask
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.skipif(util._RENAMEAT2 is None, reason="no renameat2 on this system")
def test_the_swap_is_one_exchange_where_the_system_has_it(tmp_path, monkeypatch):
    put(tmp_path / "out", OLD)

    def no_rename(*a):
        raise AssertionError("os.rename used although renameat2 can exchange")

    monkeypatch.setattr(util.os, "rename", no_rename)
    put(tmp_path / "out", NEW)
    assert tree(tmp_path / "out")["manifest.json"] == b"new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def _fail_at(monkeypatch, point):
    """Make the replace fail at ``point``; the two-rename fallback for the rename points."""
    if point == "exchange":
        def exchange(a, b):
            raise OSError("disk gone")
        monkeypatch.setattr(util, "_exchange", exchange)
        return
    monkeypatch.setattr(util, "_exchange", lambda a, b: False)
    real, calls = os.rename, []

    def rename(src, dst):
        calls.append((src, dst))
        if len(calls) == {"rename aside": 1, "rename in": 2}[point]:
            raise OSError("disk gone")
        return real(src, dst)

    monkeypatch.setattr(util.os, "rename", rename)


@pytest.mark.parametrize("point", ["fill", "exchange", "rename aside", "rename in"])
def test_a_failure_after_staging_keeps_the_previous_folder(tmp_path, monkeypatch, point):
    put(tmp_path / "out", OLD)
    files = dict(NEW)
    if point == "fill":
        def files(stage):
            (stage / "manifest.json").write_text("half")
            raise OSError("disk gone")
    else:
        _fail_at(monkeypatch, point)
    with pytest.raises(OSError, match="disk gone"):
        put(tmp_path / "out", files)
    monkeypatch.undo()
    assert tree(tmp_path / "out") == OLD
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging or set-aside folder left


def test_the_two_rename_fallback_replaces(tmp_path, monkeypatch):
    put(tmp_path / "out", OLD)
    monkeypatch.setattr(util, "_exchange", lambda a, b: False)
    put(tmp_path / "out", NEW)
    assert tree(tmp_path / "out")["manifest.json"] == b"new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_folder_that_is_not_a_previous_output_is_refused(tmp_path):
    foreign = tmp_path / "src"
    foreign.mkdir()
    (foreign / "keep.v").write_text("module m; endmodule\n")
    with pytest.raises(ValueError, match=r"^out_dir must be empty or hold a previous test output; "
                                         r"refusing to replace '.*src'$"):
        put(foreign, NEW)
    assert tree(foreign) == {"keep.v": b"module m; endmodule\n"}
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"^out_dir must be a directory, not the file '.*file'$"):
        put(tmp_path / "file", NEW)
    (tmp_path / "link").symlink_to(foreign)
    with pytest.raises(ValueError, match=r"^--output must be a directory, not the symbolic link '.*link'$"):
        replace_folder(tmp_path / "link", NEW, is_previous=is_previous, what="x", param="--output")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "link", "src"]
    # an empty folder is always replaceable
    (tmp_path / "empty").mkdir()
    put(tmp_path / "empty", NEW)
    assert tree(tmp_path / "empty")["manifest.json"] == b"new\n"


def test_file_names_must_stay_inside_the_folder(tmp_path):
    with pytest.raises(ValueError, match=r"file names must be relative paths inside the folder, not '\.\./x'"):
        put(tmp_path / "out", {"../x": b""})
    with pytest.raises(ValueError, match=r"file names must be relative paths inside the folder, not '/x'"):
        write_files(tmp_path, {"/x": b""})
    assert list(tmp_path.iterdir()) == []


def test_write_atomic_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    p = tmp_path / "r.json"
    write_atomic(p, "old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(p) as tmp:
            tmp.write_text("ne")
            raise RuntimeError("boom")
    assert p.read_text() == "old" and [q.name for q in tmp_path.iterdir()] == ["r.json"]
    with atomic_path(tmp_path / "plot.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path  # savefig picks the format by the suffix
        tmp.write_bytes(b"png")
    assert (tmp_path / "plot.png").read_bytes() == b"png"


def test_write_files_writes_every_file_before_replacing_any(tmp_path, monkeypatch):
    write_files(tmp_path, {"a.v": "old a", "a.json": "old j"})
    (tmp_path / "other.v").write_text("other")
    real, calls = util.Path.write_bytes, []

    def write_bytes(self, data):
        calls.append(self)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(self, data)

    monkeypatch.setattr(util.Path, "write_bytes", write_bytes)
    with pytest.raises(OSError, match="disk full"):
        write_files(tmp_path, {"a.v": "new a", "a.json": "new j"})
    monkeypatch.undo()
    assert tree(tmp_path) == {"a.json": b"old j", "a.v": b"old a", "other.v": b"other"}
    paths = write_files(tmp_path, {"a.v": "new a", "a.json": "new j"})
    assert paths == {"a.v": tmp_path / "a.v", "a.json": tmp_path / "a.json"}
    assert tree(tmp_path) == {"a.json": b"new j", "a.v": b"new a", "other.v": b"other"}
