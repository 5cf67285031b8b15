"""A task that takes a file."""

import hashlib
from typing import Any

from taskrun import File, task


@task("files/measure", timeout=10)
def measure(upload: File, label: str = "") -> dict[str, Any]:
    """Read the file it is given and describe it."""
    data = upload.read()
    return {
        "label": label,
        "name": upload.name,
        "content_type": upload.content_type,
        "size": upload.size,
        "read": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "on_disk": upload.path.is_file(),
    }
