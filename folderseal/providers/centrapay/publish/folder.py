"""Publishing into a folder a web server serves (``publish = "folder"``): an unguessable
name, written whole (temp, fsync, rename) before Centrapay is told its URL."""

from __future__ import annotations

import errno
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path, PurePath

from folderseal.core.files import fsync_dir, write_all
from folderseal.providers import fingerprint
from folderseal.providers.centrapay.config import CentrapayProviderConfig
from folderseal.providers.centrapay.publish.interface import PublishError

CHUNK = 1 << 20                 # the folder copy's read size
_SUFFIX = re.compile(r"^\.[a-z0-9]{1,16}$")


def suffix(entry: str) -> str:
    """The entry's suffix (lower case) if it is a plain one, else ""."""
    found = PurePath(entry).suffix.lower()
    return found if _SUFFIX.match(found) else ""


class FolderPublisher:
    """Copies into publish_dir under 32 random hex digits (128 bits) and the entry's
    suffix: temp (``.<name>.part``), fsync, rename, fsync the folder; mode 0644 for the
    web server."""

    NAME = re.compile(r"^[0-9a-f]{32}(?:\.[a-z0-9]{1,16})?$")
    TEMP = re.compile(r"^\.([0-9a-f]{32}(?:\.[a-z0-9]{1,16})?)\.part$")
    MODE = 0o644

    def __init__(self, cfg: CentrapayProviderConfig) -> None:
        assert cfg.publish_dir is not None
        self.dir = Path(cfg.publish_dir)
        self.prefix = cfg.publish_url_prefix
        self.where = f"publish_dir {self.dir}"

    def key_for(self, batch_id: str, entry: str, recorded: str = "") -> str:
        if self.NAME.match(recorded) and recorded[32:] == suffix(entry):
            return recorded   # published again: the same name, its copy replaced
        return secrets.token_hex(16) + suffix(entry)

    def probe_key(self) -> str:
        return secrets.token_hex(16) + ".txt"

    def shown(self, key: str) -> str:
        """A fingerprint: the name with publish_url_prefix is a read key to the records."""
        return fingerprint(key)

    def close(self) -> None:
        pass

    def _path(self, key: str) -> Path:
        if not self.NAME.match(key):   # a key from the store: never a path elsewhere
            raise PublishError(f"{fingerprint(key)!r} is not a name folderseal publishes under; "
                               "the batch's record is damaged")
        return self.dir / key

    def publish(self, key: str, fd: int, size: int, reached: Callable[[], None]) -> None:
        final = self._path(key)
        temp = self.dir / f".{key}.part"
        try:
            out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                          | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise self._error("cannot write into", exc) from None
        try:
            try:
                copied = _copy(fd, out, reached)
                os.fchmod(out, self.MODE)
                os.fsync(out)
            finally:
                os.close(out)
            if copied != size:
                raise PublishError(f"the batch file changed while it was copied to "
                                   f"{self.where} as {fingerprint(key)} "
                                   f"({copied} bytes, not {size}); copying again later")
            os.rename(temp, final)
            fsync_dir(self.dir)
        except OSError as exc:
            _unlink(temp)
            raise self._error("cannot write into", exc) from None
        except BaseException:
            _unlink(temp)
            raise

    def url(self, key: str) -> str:
        self._path(key)
        return self.prefix + key

    def present(self, key: str, size: int) -> bool:
        try:
            return self._path(key).stat().st_size == size
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise self._error("cannot look into", exc) from None

    def remove(self, key: str) -> None:
        path = self._path(key)
        try:
            removed = _unlink(path) | _unlink(self.dir / f".{key}.part")
            if removed:
                fsync_dir(self.dir)
        except OSError as exc:
            raise self._error("cannot remove a file from", exc) from None

    def tidy(self, keep: Callable[[], set[str]]) -> int:
        removed = 0
        try:
            with os.scandir(self.dir) as entries:
                names = [e.name for e in entries if e.is_file(follow_symlinks=False)]
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise self._error("cannot list", exc) from None
        kept = keep()   # after the listing: a name recorded since is in it
        for name in names:
            temp = self.TEMP.match(name)
            # A temp of a name a batch still records is left to that batch's create.
            if (self.NAME.match(name) and name not in kept) or \
                    (temp and temp.group(1) not in kept):
                try:
                    removed += _unlink(self.dir / name)
                except OSError as exc:
                    raise self._error("cannot remove a file from", exc) from None
        if removed:
            fsync_dir(self.dir)
        return removed

    def _error(self, doing: str, exc: OSError) -> PublishError:
        fix = ("give folderseal's user write access to it" if exc.errno in
               (errno.EACCES, errno.EPERM, errno.EROFS) else
               "create it (a folder the web server serves at publish_url_prefix)"
               if exc.errno == errno.ENOENT else "free some space" if exc.errno in
               (errno.ENOSPC, errno.EDQUOT) else "check the folder")
        return PublishError(f"folderseal {doing} {self.where}: {exc.strerror}; {fix}",
                            config=exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS,
                                                 errno.ENOENT, errno.ENOTDIR))


def _copy(src: int, dst: int, reached: Callable[[], None]) -> int:
    """Copy ``src`` from its start; ``reached`` once the first chunk is written."""
    offset = 0
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    while True:
        try:
            count = os.preadv(src, [buffer], offset)
        except OSError as exc:   # the batch file's side, not publish_dir's
            raise PublishError(f"reading the batch file failed ({exc.strerror}); copying "
                               "again later") from None
        if not count:
            return offset
        write_all(dst, view[:count])
        if not offset:
            reached()
        offset += count


def _unlink(path: Path) -> int:
    try:
        path.unlink()
    except FileNotFoundError:
        return 0
    return 1
