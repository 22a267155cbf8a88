"""One writer at a time on a folder: an advisory ``flock`` on a lock file inside it.

A TileStore appends rows at the count its commit file records; two writers on one store would write
the same rows and the last commit would win, silently losing the other's tiles. The lock is taken
with ``flock``, which the kernel releases when the holder's file is closed or the process dies, so a
killed writer never leaves a stale lock behind. Platforms without ``fcntl`` (Windows) get no lock.
"""

from __future__ import annotations

import errno
import os
import warnings
from pathlib import Path

LOCK_FILE = ".rnapaint_writer.lock"


class StoreBusyError(RuntimeError):
    """The folder is open for writing by another process or handle."""


class WriterLock:
    """An exclusive, non-blocking writer lock on ``folder`` (held until :meth:`release`).

    Parameters
    ----------
    folder
        An existing folder; the lock file ``.rnapaint_writer.lock`` is created in it.

    Raises
    ------
    StoreBusyError
        If another process, or another handle in this process, holds the lock.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self._fd: int | None = None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return
        fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                # A file system without flock (some network mounts): write without the guard.
                msg = f"Cannot lock {self.folder} for writing ({e}); make sure no other writer uses it."
                warnings.warn(msg, stacklevel=3)
                return
            who = f"process {holder}" if holder and holder != str(os.getpid()) else "another handle in this process"
            raise StoreBusyError(
                f"{self.folder} is open for writing by {who}: one writer at a time. Wait for it to finish, "
                "or close the other handle (store.close())."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    @property
    def held(self) -> bool:
        """Whether this object holds the lock (``False`` after :meth:`release`, or without ``fcntl``)."""
        return self._fd is not None

    def release(self) -> None:
        """Release the lock (closing the file releases the ``flock``); safe to call twice."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self):
        self.release()


def check_no_writer(folder: str | os.PathLike) -> None:
    """Raise :class:`StoreBusyError` if a writer holds ``folder`` (e.g. before deleting or replacing it)."""
    if Path(folder, LOCK_FILE).is_file():
        WriterLock(folder).release()
