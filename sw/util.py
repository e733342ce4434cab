"""Atomic writes: one implementation for every file and output folder lowbit writes.

A reader (a user, ``lowbit sim``, a parallel explore worker) must never see half a file or
half a folder, and a failed or interrupted write must never lose the previous output.

* :func:`write_atomic` / :func:`atomic_path`: one file, written beside its target and
  renamed over it (``os.replace`` is atomic on POSIX and Windows).
* :func:`write_files`: several files into a folder that also holds other things (a gen
  folder of blocks, an explore folder with its cache): every file is complete before the
  first is renamed into place.
* :func:`replace_folder`: a folder that belongs to one output as a whole (an image set, a
  network build): the complete new folder is staged beside the target, then swapped in.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

__all__ = ["write_atomic", "atomic_path", "write_files", "replace_folder", "check_replaceable", "ToolRunError"]


def _as_bytes(data: bytes | str) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``.

    For writers that want a file name of their own (``np.savez``, ``torch.save``,
    ``fig.savefig``, ``csv``): write to the yielded path; if the block raises, the
    temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(path, "tmp", path.suffix)  # the real suffix last: savefig picks the format by it
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _sibling(path: Path, tag: str, suffix: str = "") -> Path:
    """A fresh hidden name beside ``path`` (same folder, so a rename is atomic), not created.

    Not ``tempfile.mkstemp``/``mkdtemp``: they create 0600 files and 0700 folders, and the
    output would keep those permissions after the rename. The pid and random part keep
    concurrent writers (explore workers) apart.
    """
    return path.with_name(f".{path.name}.{tag}-{os.getpid()}-{secrets.token_hex(4)}{suffix}")


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` (``str`` as UTF-8) to ``path``: the old file or the new one, never half."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(_as_bytes(data))
    return path


def write_files(folder: str | os.PathLike, files: Mapping[str, bytes | str]) -> dict[str, Path]:
    """Write ``{file name: data}`` into ``folder`` (created if missing), leaving other files alone.

    Every file is written to a temporary name first and only then renamed into place, so a
    failure while writing leaves every previous file as it was. Returns ``{name: path}``.
    """
    folder = Path(folder)
    paths = {name: folder / _relative(name) for name in files}
    folder.mkdir(parents=True, exist_ok=True)
    tmps: dict[str, Path] = {}
    try:
        for name, data in files.items():
            paths[name].parent.mkdir(parents=True, exist_ok=True)
            tmps[name] = _sibling(paths[name], "tmp")
            tmps[name].write_bytes(_as_bytes(data))
        for name, tmp in tmps.items():
            os.replace(tmp, paths[name])
    finally:
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)
    return paths


def _relative(name: str) -> Path:
    p = Path(name)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ValueError(f"file names must be relative paths inside the folder, not {name!r}")
    return p


def replace_folder(target: str | os.PathLike, contents: Mapping[str, bytes | str] | Callable[[Path], None], *,
                   is_previous: Callable[[Path], bool], what: str, param: str = "out_dir") -> Path:
    """Replace the folder ``target`` as a whole by new contents, atomically.

    Parameters
    ----------
    target : path
        The output folder. It may be missing, empty, or a previous output of the same kind.
    contents : mapping or callable
        ``{relative file name: bytes or str}``, or a function that fills the staging
        folder it is given (a ``Path``; it may create subfolders).
    is_previous : callable
        ``is_previous(target) -> bool``: whether a non-empty ``target`` is a previous output
        that may be deleted (e.g. it holds a lowbit ``manifest.json``). Anything else is
        refused before anything is written, so unrelated files are never deleted.
    what : str
        What a previous output is, for the refusal message ("a previous lowbit build").
    param : str
        The parameter named in error messages.

    Returns
    -------
    Path
        ``target``.

    The new folder is staged beside ``target`` (same file system, so the swap is a rename)
    and swapped in only when complete. On Linux the swap is one ``renameat2(RENAME_EXCHANGE)``
    call, so even a killed process leaves the previous folder or the new one under the
    target's name; elsewhere the previous folder is renamed aside first and renamed back if
    the second rename fails. Either way, a failure at any point leaves the complete
    previous folder or the complete new one, and no staging folder.
    """
    target = check_replaceable(target, is_previous=is_previous, what=what, param=param)
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = _sibling(target, "tmp")
    stage.mkdir()
    try:
        if callable(contents):
            contents(stage)
        else:
            for name, data in contents.items():
                path = stage / _relative(name)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(_as_bytes(data))
        old = _swap_in(stage, target)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def check_replaceable(target: str | os.PathLike, *, is_previous: Callable[[Path], bool], what: str,
                      param: str = "out_dir") -> Path:
    """Refuse a ``target`` that :func:`replace_folder` would refuse (see there), before any work.

    Writers whose output takes long to make call it first, so a wrong ``--output`` fails at
    once rather than after the work.
    """
    target = Path(target)
    if target.is_symlink():
        # swapping would replace the link, not the folder it points to
        raise ValueError(f"{param} must be a directory, not the symbolic link {str(target)!r}")
    if target.exists():
        if not target.is_dir():
            raise ValueError(f"{param} must be a directory, not the file {str(target)!r}")
        if any(target.iterdir()) and not is_previous(target):
            raise ValueError(f"{param} must be empty or hold {what}; refusing to replace {str(target)!r}")
    return target


def _swap_in(stage: Path, target: Path) -> Path | None:
    """Put ``stage`` at ``target``; return where the previous folder now is (to delete), or None."""
    if not target.exists():
        os.rename(stage, target)
        return None
    if _exchange(stage, target):
        return stage  # the two names swapped: the previous folder is at the staging name
    aside = _sibling(target, "old")
    os.rename(target, aside)
    try:
        os.rename(stage, target)
    except BaseException:
        os.rename(aside, target)
        raise
    return aside


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _renameat2():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        fn = libc.renameat2  # glibc >= 2.28
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_RENAMEAT2 = _renameat2()


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap the names ``a`` and ``b``; False when this system or file system cannot."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # not on this file system: two renames
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


class ToolRunError(RuntimeError):
    """An external tool (a simulator, yosys, nextpnr) that did not run to completion. Its message
    names the tool, the stage, the cause and the log; ``lowbit`` prints it without a traceback
    (exit status 1: the input was fine, the run failed)."""
