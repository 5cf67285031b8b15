"""The local stack's state folder (`.taskrun/`, or `taskrun local --data DIR`): owner only.

It holds the tables' journal (every run's arguments, results and logs), the API key, the
webhook signing secret and the tasks' secrets. What taskrun writes there is made owner-only
as it is created (taskrun.private); a folder made before that, or by hand, or copied with
wider modes, is narrowed at the stack's start.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from taskrun.private import PRIVATE_FILE, PRIVATE_FOLDER


@dataclass
class Narrowed:
    """What a start narrowed: how many folders and files had group or other bits."""

    folders: int = 0
    files: int = 0

    def __bool__(self) -> bool:
        return bool(self.folders or self.files)

    def describe(self, root: Path) -> str:
        return (
            f"the state folder {root} was open to others: narrowed to owner only "
            f"{self.folders} folders (0700) and {self.files} files (0600)"
        )


def narrow_to_owner(root: Path) -> Narrowed:
    """Take the group and other bits off the folder and everything in it (links are not
    followed: what they point to is not the state folder's)."""
    narrowed = Narrowed()
    if not root.is_dir() or root.is_symlink():
        return narrowed
    narrowed.folders += _narrow(root, PRIVATE_FOLDER)
    for folder, folders, files in os.walk(root):
        for name in folders:
            narrowed.folders += _narrow(Path(folder, name), PRIVATE_FOLDER)
        for name in files:
            narrowed.files += _narrow(Path(folder, name), PRIVATE_FILE)
    return narrowed


def _narrow(path: Path, allowed: int) -> int:
    """1 if the path had bits beyond `allowed` and now has not; links and vanished paths are left."""
    try:
        mode = stat.S_IMODE(path.lstat().st_mode)
    except FileNotFoundError:
        return 0
    if path.is_symlink() or not mode & ~allowed:
        return 0
    os.chmod(path, mode & allowed)
    return 1
