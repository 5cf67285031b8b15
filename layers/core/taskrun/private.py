"""Files only their owner may read: the local stack's state folder (its tables' journal, its
API key and webhook secret) and the tasks' secrets kept in a directory.

Each is made owner-only as it is created (0700 folders, 0600 files), whatever the process's
umask, rather than by a umask of our own: a umask is process-wide, and would reach the files
the tasks themselves write elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

PRIVATE_FOLDER = 0o700
PRIVATE_FILE = 0o600


def private_folder(path: Path) -> Path:
    """Make a folder, and each missing one above it, owner only; an existing one is left as it is."""
    missing = [folder for folder in (path, *path.parents) if not folder.exists()]
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_FOLDER)
        except FileExistsError:
            continue  # made meanwhile by another process: as that one made it
        os.chmod(folder, PRIVATE_FOLDER)  # the mode as asked, whatever the umask took from it
    return path


def open_private(path: Path, append: bool = False, buffering: int = -1) -> IO[bytes]:
    """A file for writing, owner only: made so if new, narrowed to so if it was not."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    descriptor = os.open(path, flags, PRIVATE_FILE)
    try:
        os.fchmod(descriptor, PRIVATE_FILE)
        return os.fdopen(descriptor, "ab" if append else "wb", buffering=buffering)
    except BaseException:
        os.close(descriptor)
        raise


def write_private(path: Path, text: str) -> None:
    """Write a whole file, owner only."""
    with open_private(path) as stream:
        stream.write(text.encode())
