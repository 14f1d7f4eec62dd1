"""Writing an output where the user said: ``llm-monitor export -o FILE`` and ``llm-monitor backup DB DEST``.

The rules, decided once for both commands:

* ``/dev/stdout``, ``/dev/stderr``, ``/dev/fd/N`` and ``/proc/self/fd/N`` write to that open descriptor (like
  ``-``), whatever it points to: a pipe, a terminal, or a file the shell opened for appending.
* A symlink is followed to its final target and the rules below apply to the target (as shell redirection and
  ``cp`` do). A dangling symlink is refused (``FileNotFoundError``) rather than creating a file somewhere else,
  and so is another user's symlink in a sticky world-writable directory such as ``/tmp`` (``PermissionError``, as
  Linux's ``fs.protected_symlinks`` would refuse it).
* Anything that is not a regular file (a character device such as ``/dev/null``, a FIFO, a terminal) is written
  through: opened for writing as it is, never replaced, never truncated. A block device is storage: with
  ``overwrite=False`` it is refused like an existing file.
* A regular file (or a new path) is written under a temporary name beside the target and renamed into place only
  when complete, so an interrupted write never leaves half a file under the target's name. An existing file keeps
  its permission bits (and its owner and group where the process may set them); a new file gets ``new_mode``
  filtered by the umask, as ``open()`` would make it. The rename gives the target a new inode: hard links to the
  old file keep the old content.
"""

from __future__ import annotations

import contextlib
import enum
import os
import re
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_FD_PATH = re.compile(r"/(?:dev/fd|proc/self/fd)/(\d+)")
_STD_STREAMS = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}


class Kind(enum.Enum):
    """What an output path names."""

    DESCRIPTOR = "descriptor"
    """An already open descriptor of this process (``/dev/stdout``, ``/dev/fd/3``)."""
    STREAM = "stream"
    """Something written through, not replaced: a device, a FIFO."""
    FILE = "file"
    """An existing regular file: replaced atomically, keeping its mode."""
    NEW = "new"
    """Nothing there yet: created atomically."""


@dataclass(frozen=True, slots=True)
class Output:
    """Where an output goes, as :func:`resolve` found it."""

    path: Path
    """The path as given."""
    target: Path
    """The path written: ``path`` with symlinks resolved."""
    kind: Kind
    fd: int | None = None
    """The descriptor for :attr:`Kind.DESCRIPTOR`."""
    st: os.stat_result | None = None
    """The existing target's status (``None`` for a new path)."""

    @property
    def replaces(self) -> bool:
        """Whether the write goes through a temporary file renamed into place."""
        return self.kind in (Kind.FILE, Kind.NEW)


def resolve(path: str | os.PathLike[str], *, overwrite: bool = True) -> Output:
    """Classify ``path`` by the module's rules.

    Raises ``FileExistsError`` for an existing regular file or block device when not ``overwrite``,
    ``IsADirectoryError`` for a directory, ``FileNotFoundError`` for a missing parent directory or a dangling
    symlink, and ``OSError`` for what cannot be examined (a symlink loop, no permission).
    """
    given = Path(path)
    absolute = os.path.abspath(given)
    fd = _STD_STREAMS.get(absolute)
    if fd is None and (m := _FD_PATH.fullmatch(absolute)):
        fd = int(m.group(1))
    if fd is not None:
        os.fstat(fd)  # EBADF now, not half-way through
        return Output(given, given, Kind.DESCRIPTOR, fd=fd)
    if given.is_symlink():
        _check_link_may_be_followed(given)
    target = Path(os.path.realpath(given))
    try:
        st = os.stat(target)
    except FileNotFoundError:
        if given.is_symlink():
            raise FileNotFoundError(f"{given}: is a symlink to {target}, which does not exist") from None
        if not target.parent.is_dir():
            raise FileNotFoundError(f"{target.parent}: no such directory") from None
        return Output(given, target, Kind.NEW)
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(f"{given}: is a directory; give a file's name")
    if stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode):
        if not overwrite:
            what = "already exists" if stat.S_ISREG(st.st_mode) else "is a block device"
            raise FileExistsError(f"{given}: {what} (overwrite it with --force)")
        if stat.S_ISREG(st.st_mode):
            return Output(given, target, Kind.FILE, st=st)
    return Output(given, target, Kind.STREAM, st=st)


def _check_link_may_be_followed(link: Path) -> None:
    """Refuse what Linux's ``fs.protected_symlinks`` refuses: someone else's symlink in a sticky shared directory.

    The kernel applies that rule when ``open()`` follows a link; resolving the link here and opening the target
    would bypass it (think of root running ``export -o /tmp/out.csv`` where another user planted
    ``/tmp/out.csv -> /etc/shadow``).
    """
    if not hasattr(os, "geteuid"):
        return
    directory = os.stat(link.parent)
    shared = directory.st_mode & stat.S_ISVTX and directory.st_mode & stat.S_IWOTH
    owner = os.lstat(link).st_uid
    if shared and owner not in (os.geteuid(), directory.st_uid):
        raise PermissionError(
            f"{link}: refusing to follow a symlink owned by another user in a shared directory; give the target"
        )


def create_beside(target: Path, mode: int = 0o666) -> tuple[int, Path]:
    """A new, empty, uniquely named file in ``target``'s directory, opened for writing: ``(fd, path)``.

    The file is created with ``mode`` filtered by the umask (unlike :func:`tempfile.mkstemp`, which makes 0600).
    """
    for _ in range(100):
        tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{target.parent}: could not create a temporary file")  # pragma: no cover


def adopt_metadata(fd: int, out: Output) -> None:
    """Give the open temporary file ``fd`` the replaced file's permission bits, owner and group."""
    if out.st is None or not hasattr(os, "fchmod"):
        return
    os.fchmod(fd, stat.S_IMODE(out.st.st_mode))
    mine = os.fstat(fd)
    if (mine.st_uid, mine.st_gid) != (out.st.st_uid, out.st.st_gid):
        with contextlib.suppress(OSError):  # only root (or a member of the group) may; the mode is what matters
            os.fchown(fd, out.st.st_uid, out.st.st_gid)
            os.fchmod(fd, stat.S_IMODE(out.st.st_mode))  # chown clears set-id bits


def open_through(out: Output) -> int:
    """A descriptor writing to a :attr:`Kind.DESCRIPTOR` or :attr:`Kind.STREAM` output (close it when done)."""
    if out.kind is Kind.DESCRIPTOR:
        assert out.fd is not None
        return os.dup(out.fd)
    return os.open(out.target, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))  # no O_CREAT, no O_TRUNC: write through


@contextlib.contextmanager
def open_output(
    path: str | os.PathLike[str] | Output, *, overwrite: bool = True, new_mode: int = 0o666
) -> Iterator[BinaryIO]:
    """A binary file writing to ``path`` by the module's rules; a replaced file takes its name only on success.

    ``path`` may be an :class:`Output` from :func:`resolve` (to report a bad path before any work).
    """
    out = path if isinstance(path, Output) else resolve(path, overwrite=overwrite)
    if not out.replaces:
        with os.fdopen(open_through(out), "wb") as stream:
            yield stream
        return
    fd, tmp = create_beside(out.target, new_mode)
    try:
        with os.fdopen(fd, "wb") as stream:
            adopt_metadata(stream.fileno(), out)
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, out.target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
