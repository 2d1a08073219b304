"""Durable file operations: hash, copy, fsync, and publish without replacing.

Publishing follows maildir: write a temp name in the target folder, fsync it, then
``link()`` it to the final name (which fails with EEXIST instead of replacing) and
unlink the temp name; finally fsync the folder, because a new name survives a crash
only once its folder is synced. Memory stays flat: everything streams in 1 MiB chunks.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import re
import secrets
import shutil
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from folderseal.core import crashpoints

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_libc: Any = ctypes.CDLL(None, use_errno=True)
_renameat2: Any = getattr(_libc, "renameat2", None)  # None: a C library without it

CHUNK = 1 << 20
MAX_NUMBERED = 10_000  # -1 … -9999: past that, someone must clear the folder out
TEMP_PREFIX = ".folderseal-tmp-"
# The disk or the folder is the problem, not the file: wait and retry.
TRANSIENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES,
                              errno.EPERM, errno.EIO, errno.ENOENT, errno.ESTALE,
                              errno.ENOTCONN, errno.EHOSTDOWN, errno.ETIMEDOUT})
# link() refused: a filesystem without hard links, or another user's file under
# fs.protected_hardlinks.
NO_LINK_ERRNOS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK,
                            errno.EXDEV})
# The filesystem refuses this particular name (":" on SMB, or a name too long).
NAME_ERRNOS = frozenset({errno.EINVAL, errno.ENAMETOOLONG, errno.EILSEQ})


def fsync_dir(path: Path | str) -> None:
    """fsync a folder so renames and links in it survive a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # some filesystems cannot sync a folder
            raise
    finally:
        os.close(fd)


def read_buffer(fd: int, size: int | None = None) -> bytearray:
    """A buffer to read ``fd`` through in chunks: its size (``size`` if the caller knows
    it, and a page, to see its end in the same read) when that is smaller than a chunk,
    as most files are; a megabyte made for a 100 KB file is zeroed and mapped in for
    nothing."""
    if size is None:
        size = os.fstat(fd).st_size
    return bytearray(min(CHUNK, size + 4096))


def hash_fd(fd: int, size_hint: int | None = None) -> tuple[str, int]:
    """sha256 and size of everything readable from ``fd`` (from its start); ``size_hint``
    (its size, as the caller found it) only sizes the buffer."""
    digest = hashlib.sha256()
    size = 0
    buf = read_buffer(fd, size_hint)
    view = memoryview(buf)
    offset = 0
    while True:
        n = os.preadv(fd, [buf], offset)
        if n == 0:
            break
        digest.update(view[:n])
        offset += n
        size += n
    return digest.hexdigest(), size


def hash_with_prefix(fd: int, prefix_len: int) -> tuple[str, str, int]:
    """sha256 of the whole file and of its first ``prefix_len`` bytes, in one pass."""
    whole = hashlib.sha256()
    prefix_digest = ""
    offset = 0
    while True:
        want = CHUNK
        if offset < prefix_len:
            want = min(want, prefix_len - offset)
        chunk = os.pread(fd, want, offset)
        if offset == prefix_len:
            prefix_digest = whole.hexdigest()
        if not chunk:
            break
        whole.update(chunk)
        offset += len(chunk)
    return whole.hexdigest(), prefix_digest, offset


def hash_path(path: Path) -> tuple[str, int]:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        return hash_fd(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """os.write until every byte is written (a write may be short)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def copy_fd(src_fd: int, dst_fd: int, size_hint: int | None = None) -> tuple[str, int]:
    """Copy ``src_fd`` into ``dst_fd`` from the start, returning sha256 and size of the
    copy; ``size_hint`` as for :func:`hash_fd`."""
    digest = hashlib.sha256()
    size = 0
    buf = read_buffer(src_fd, size_hint)
    view = memoryview(buf)
    while True:
        n = os.preadv(src_fd, [buf], size)
        if n == 0:
            break
        digest.update(view[:n])
        write_all(dst_fd, view[:n])
        size += n
    return digest.hexdigest(), size


def temp_name(tag: str = "", epoch: int | None = None) -> str:
    """A hidden temp name; ``tag`` (a file id) lets a later run find its own leftovers,
    and ``epoch`` (the lease epoch of the batch it is written for) tells whose they are:
    a node that lost its lease (epoch N-1) and the batch's holder now (epoch N) never
    share a temp name, nor remove each other's (:func:`remove_leftovers`)."""
    mark = f"{tag}-" if tag else ""
    if epoch is not None:
        mark += f"e{epoch}-"
    return f"{TEMP_PREFIX}{mark}{secrets.token_hex(6)}"


_TEMP_EPOCH = re.compile(r"e(\d+)-[0-9a-f]{12}")


def temp_epoch(name: str, tag: str) -> int:
    """The epoch in a temp name made for ``tag`` (0: one made without an epoch)."""
    found = _TEMP_EPOCH.fullmatch(name[len(TEMP_PREFIX) + len(tag) + 1:])
    return int(found.group(1)) if found else 0


def remove_leftovers(folder: Path, tag: str, epoch: int | None = None) -> None:
    """Remove temp files a crash left behind for ``tag`` in ``folder``. With ``epoch``,
    only those of that epoch or an earlier one: a temp file of a newer epoch belongs to
    the batch's holder now, which may be writing it this very moment."""
    for path in folder.glob(f"{TEMP_PREFIX}{tag}-*"):
        if epoch is not None and temp_epoch(path.name, tag) > epoch:
            continue
        path.unlink(missing_ok=True)


def unlink_if_same(path: Path, made: os.stat_result | tuple[int, int]) -> bool:
    """Remove ``path`` only if it is still the very file ``made`` describes (its device
    and inode): what another process put at that name since is left alone. True if
    removed. (The look and the unlink are two calls; nothing can fence the instant
    between them, but a name is never removed for holding someone else's file.)"""
    ident = (made.st_dev, made.st_ino) if isinstance(made, os.stat_result) else made
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if (st.st_dev, st.st_ino) != ident:
        return False
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


@contextmanager
def temp_file(folder: Path, mode: int, tag: str = "", epoch: int | None = None,
              ) -> Iterator[tuple[int, Path]]:
    """A new temp file in ``folder``; removed again unless the caller renamed or linked it
    (and only while its name still holds the file made here)."""
    path = folder / temp_name(tag, epoch)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 mode)
    made = os.fstat(fd)
    try:
        yield fd, path
    finally:
        os.close(fd)
        unlink_if_same(path, made)


def link_noreplace(src: Path, dst: Path, follow: bool = False) -> None:
    """Give ``src`` the extra name ``dst``; EEXIST if ``dst`` is taken (never replaces).

    ``follow`` is for ``/proc/self/fd/N``: then the open file itself gets the name.
    """
    if not follow:
        os.link(src, dst, follow_symlinks=False)
        return
    # Plain link() would link the /proc entry itself (EXDEV); a directory fd makes
    # Python call linkat(…, AT_SYMLINK_FOLLOW), which follows it to the open file.
    os.link(src, dst, src_dir_fd=_root_fd(), follow_symlinks=True)


_ROOT: list[int] = []  # "/" opened once for the process
_ROOT_LOCK = threading.Lock()


def _root_fd() -> int:
    """A descriptor of "/" for :func:`link_noreplace` (any directory's does: the path it
    is given is absolute), opened once for the process."""
    if not _ROOT:
        with _ROOT_LOCK:
            if not _ROOT:
                _ROOT.append(os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
    return _ROOT[0]


def write_new(folder: Path, name: str, data: bytes, mode: int, tag: str = "",
              epoch: int | None = None) -> Path:
    """Write ``data`` durably to ``folder/name``, which must not exist yet."""
    final = folder / name
    with temp_file(folder, mode, tag, epoch) as (fd, tmp):
        write_all(fd, data)
        os.fchmod(fd, mode)
        os.fsync(fd)
        rename_noreplace(tmp, final)
    return final


def rename_noreplace(src: Path, dst: Path) -> None:
    """Rename without ever replacing ``dst`` (EEXIST if it is taken).

    ``renameat2(RENAME_NOREPLACE)`` where the filesystem offers it; otherwise
    ``link()`` then ``unlink()``. The rename matters for files folderseal may not read:
    with ``fs.protected_hardlinks`` the kernel refuses to link them.
    """
    result = _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst),
                        _RENAME_NOREPLACE) if _renameat2 is not None else -1
    if result == 0:
        return
    err = ctypes.get_errno() if _renameat2 is not None else errno.ENOSYS
    if err not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        raise OSError(err, os.strerror(err), str(src), None, str(dst))
    try:
        link_noreplace(src, dst)
    except OSError as exc:
        if exc.errno not in NO_LINK_ERRNOS:
            raise
        # Neither: look, then rename (a filesystem with neither leaves no better way).
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, "File exists", str(dst)) from None
        os.rename(src, dst)
        return
    src.unlink()


def move_noreplace(src: Path, dst: Path, mode: int | None = None, tag: str = "",
                   epoch: int | None = None) -> None:
    """Move a file to a name that must not exist yet, across filesystems if need be (a
    symbolic link moves as a link; another file that is not regular cannot).

    The source is removed only after the destination is durable.
    """
    try:
        rename_noreplace(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        if stat.S_ISLNK(os.lstat(src).st_mode):
            _copy_link(src, dst, tag, epoch)
        else:
            _copy_file(src, dst, mode, tag, epoch)
        fsync_dir(dst.parent)  # the copy's name survives a power cut before the original goes
        crashpoints.reached("move:copied")
        src.unlink()
    else:
        fsync_dir(dst.parent)
    fsync_dir(src.parent)


def _copy_file(src: Path, dst: Path, mode: int | None, tag: str, epoch: int | None) -> None:
    with temp_file(dst.parent, 0o600, tag, epoch) as (fd, tmp):
        # O_NONBLOCK: a FIFO must not wait for a writer; it is refused below.
        src_fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(src_fd).st_mode):
                raise OSError(errno.EXDEV, "not a regular file, so it cannot be copied to "
                              "another filesystem", str(src))
            copy_fd(src_fd, fd)
            shutil.copystat(src, tmp, follow_symlinks=False)
        finally:
            os.close(src_fd)
        if mode is not None:
            os.fchmod(fd, mode)
        os.fsync(fd)
        rename_noreplace(tmp, dst)


def _copy_link(src: Path, dst: Path, tag: str, epoch: int | None) -> None:
    """A symbolic link made again at ``dst`` on another filesystem: moved, never followed."""
    tmp = dst.parent / temp_name(tag, epoch)
    os.symlink(os.readlink(src), tmp)
    made = os.lstat(tmp)
    try:
        rename_noreplace(tmp, dst)
    finally:
        unlink_if_same(tmp, made)


def move_numbered(src: Path, dest: Path, dir_mode: int | None = None,
                  taken: Callable[[], None] | None = None) -> Path:
    """Move ``src`` to ``dest``, or ``dest-1``, ``dest-2``… if taken; the name it got.

    ``taken`` is called each time a name is found taken, before the next is tried: a
    batch's step makes a fenced store write there, so a node that lost its lease never
    picks another name."""
    makedirs(dest.parent, dir_mode)
    for n in range(MAX_NUMBERED):
        target = dest.with_name(numbered(dest.name, n))
        try:
            move_noreplace(src, target)
            return target
        except FileExistsError:
            if taken is not None:
                taken()
            continue
    raise FileExistsError(errno.EEXIST, f"{MAX_NUMBERED} files are named like {dest.name}; "
                          "clear some out", str(dest.parent))


def numbered(name: str, n: int) -> str:
    """``invoice.pdf`` → ``invoice-2.pdf`` (n=2); n=0 leaves the name as it is."""
    if n == 0:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:  # no extension, or a name like ".profile"
        return f"{name}-{n}"
    return f"{stem}-{n}.{ext}"


def free_bytes(path: Path) -> int | None:
    """Bytes available to unprivileged users on ``path``'s filesystem (None if unknown)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def folder_mode(file_mode: int) -> int:
    """The mode for folders that hold outputs of ``file_mode``: searchable where readable
    (0644 gives 0755, 0640 gives 0750)."""
    return file_mode | (file_mode & 0o444) >> 2


def makedirs(path: Path, mode: int | None = None, within: Path | None = None) -> None:
    """Create missing folders and fsync each parent that gained one. With ``mode``, each
    new folder gets exactly that mode (whatever the umask), so people on a share can
    reach what is published there; without, 0755 less the umask. ``within`` is never
    created (FileNotFoundError): a share's root missing is a share not mounted, and
    what is made in its place lands on the local disk, hidden once the share is back."""
    missing = []
    probe = path
    while not probe.exists():
        if probe == within:
            raise FileNotFoundError(errno.ENOENT, "not there (a share not mounted?)", str(probe))
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o755 if mode is None else mode)
            if mode is not None:
                os.chmod(folder, mode)
        except FileExistsError:
            continue
        fsync_dir(folder.parent)
