"""What arrived in the inbox, looked at without trusting it.

An inbox entry is a delivery only if it is a regular file: links are never followed (a link
could point at a file the partner never sent, such as another partner's extract or the hub's
own key), and FIFOs, devices and sockets are never opened (opening one can block for ever or
read without end). Names are shown as printable text wherever they leave the file system.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
from pathlib import Path
from typing import BinaryIO


def printable_name(name: str) -> str:
    """``name`` as a person can read it in a message, a log line or a table: bytes that are not
    UTF-8 as ``\\xNN``, control and invisible format characters (new lines, terminal escapes,
    right-to-left overrides) as ``\\n``, ``\\x1b``, ``\\u202e``. Ordinary names are unchanged."""
    text = os.fsencode(name).decode("utf-8", "backslashreplace")
    escaped = []
    for char in text:
        if char.isprintable():
            escaped.append(char)
        elif char in "\n\r\t":
            escaped.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[char])
        else:
            code = ord(char)
            escaped.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return "".join(escaped)


def delivery_kind(path: Path) -> str | None:
    """None for a regular file, else what the inbox entry is instead (without following links)."""
    mode = os.lstat(path).st_mode
    if stat.S_ISREG(mode):
        return None
    for test, kind in (
        (stat.S_ISLNK, "symbolic link"),
        (stat.S_ISFIFO, "FIFO (named pipe)"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISDIR, "folder"),
    ):
        if test(mode):
            return kind
    return "special file"


def _keep_as_file(entry: Path, target: Path) -> None:
    """Replace an inbox entry that is not a regular file by a regular file at ``target`` holding
    the bytes that arrived: a link's target path (the link is never followed), nothing for a
    FIFO, device or socket (they carry no delivered bytes and are never opened)."""
    content = os.fsencode(os.readlink(entry)) if entry.is_symlink() else b""
    write_new(target, content)
    os.unlink(entry)


def move_delivery(file: Path, target: Path) -> None:
    """Move an inbox entry to ``target`` (a free name), so that ``target`` is always a regular file."""
    if delivery_kind(file) is not None:
        _keep_as_file(file, target)
        return
    try:
        os.rename(file, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.copyfile(file, target, follow_symlinks=False)  # the inbox is another file system
        os.unlink(file)
    if delivery_kind(target) is not None:
        # Swapped for a link (or a FIFO) after it was checked: keep what the entry is, never a link.
        moved = target.with_name(f".{target.name}.entry")
        os.rename(target, moved)
        _keep_as_file(moved, target)


def write_new(path: Path, data: bytes) -> None:
    """Write a file that must not exist yet (never through a link), and flush it to disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        # A full disk (ENOSPC) or a kill mid-write must not leave a short or 0-byte file behind (a
        # held delivery's reason read as empty, issue 20): the caller's step fails and says why.
        path.unlink(missing_ok=True)
        raise


def open_delivery(path: Path) -> BinaryIO:
    """Open a regular file for reading, never through a link and never blocking on a FIFO;
    raise :class:`NotADelivery` naming what the entry is instead."""
    kind = delivery_kind(path)
    if kind is not None:
        raise NotADelivery(kind)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotADelivery("symbolic link") from None
        raise
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):  # swapped between the look and the open
        os.close(fd)
        raise NotADelivery("special file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


class DigestingReader:
    """A delivery's stream that hashes every byte read from it, and remembers which file it is
    (:meth:`identity`), so what is later moved can be compared with what was checked."""

    def __init__(self, handle: BinaryIO):
        self._handle = handle
        self._digest = hashlib.sha256()
        self.status = os.fstat(handle.fileno())

    def read(self, n: int = -1) -> bytes:
        data = self._handle.read(n)
        if data:
            self._digest.update(data)
        return data

    def hexdigest(self) -> str:
        """SHA-256 of the whole file as read (what was not read yet is read now)."""
        while self.read(1 << 20):
            pass
        return self._digest.hexdigest()


class NotADelivery(OSError):
    """An inbox entry that is not a regular file; ``kind`` says what it is."""

    def __init__(self, kind: str):
        super().__init__(f"a {kind}, not a regular file")
        self.kind = kind
