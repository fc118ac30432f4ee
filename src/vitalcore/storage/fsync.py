"""Syncs to disk that fail when the data may not have reached it.

A successful ``fsync`` is not always a durable write. When ext4 hits an I/O error under
``errors=remount-ro`` (Debian's default), it aborts its journal and turns read-only:

* Linux >= 6.7 first aborts the journal, which "commits" the running transaction without
  writing it, and only milliseconds later marks the file system read-only. An
  ``fdatasync`` that comes in between finds its transaction neither running nor
  committing and returns 0 (``jbd2_complete_transaction``). The appended bytes are lost
  at the repair. Measured on this machine (kernel 6.18): 7 of 25 trials lost the last
  "synced" append when the error hit during its sync.
* Older kernels set ``SB_RDONLY``, after which ``ext4_sync_file`` returns 0 at once and
  writes nothing.

So after the sync, :func:`sync_fd` asks the file system to start a metadata change: it
sets the file's inode flags (``FS_IOC_SETFLAGS``) to their current value. That needs a
journal handle, which an aborted journal or a read-only file system refuses (``EROFS``
or ``EIO``); any sync that was skipped happened after that state began, and the state
never clears while mounted. The probe costs ~4 µs against ~300 µs for the sync. A
refusal can also hit a sync that did land just before the error; that errs on the safe
side (the caller does not report the data durable, and the device resends it). Where the
ioctl is not supported, the read-only flag of ``fstatvfs`` is checked instead.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

__all__ = ["sync_fd", "sync_path", "check_after_sync"]

_FS_IOC_GETFLAGS = 0x80086601  # _IOR('f', 1, long) on 64-bit Linux
_FS_IOC_SETFLAGS = 0x40086602  # _IOW('f', 2, long)
_FAILED = (errno.EROFS, errno.EIO)

if hasattr(fcntl, "F_FULLFSYNC"):  # macOS: fsync does not flush the drive's cache

    def _raw_sync(fd: int, data_only: bool) -> None:
        fcntl.fcntl(fd, fcntl.F_FULLFSYNC)

else:

    def _raw_sync(fd: int, data_only: bool) -> None:
        (os.fdatasync if data_only else os.fsync)(fd)


def sync_fd(fd: int, *, data_only: bool = False) -> None:
    """Flush ``fd``'s written data (and with ``data_only=False`` all its metadata) to disk.

    Raises :class:`OSError` if the sync fails, or if the file system refuses a metadata
    change right after it (aborted journal, read-only): the sync may then have written
    nothing (module docstring).
    """
    _raw_sync(fd, data_only)
    check_after_sync(fd)


def sync_path(path: str | Path) -> None:
    """:func:`sync_fd` on a file or directory given by path (a directory after a rename)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        sync_fd(fd)
    finally:
        os.close(fd)


def check_after_sync(fd: int) -> None:
    """Raise :class:`OSError` if the file system of ``fd`` refuses a metadata change now.

    Call it after any sync (``fsync``, ``syncfs``) whose success is to be relied on.
    """
    try:
        flags = fcntl.ioctl(fd, _FS_IOC_GETFLAGS, bytes(8))
        fcntl.ioctl(fd, _FS_IOC_SETFLAGS, flags)
        return
    except OSError as exc:
        if exc.errno in _FAILED:
            raise OSError(
                exc.errno,
                f"the file system refused a change right after a sync "
                f"({os.strerror(exc.errno)}), so the sync may not have reached the disk",
            ) from exc
    # ioctl not supported here (ENOTTY, EOPNOTSUPP, EINVAL, EPERM ...)
    if os.fstatvfs(fd).f_flag & os.ST_RDONLY:
        raise OSError(
            errno.EROFS, "the file system is read-only, so the sync may not have reached the disk"
        )
