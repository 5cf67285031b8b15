"""File inputs: a task parameter typed `File` takes a file uploaded beforehand.

1. POST /v1/files with `{filename, content_type, size}` answers a `file_id` and a
   pre-signed S3 PUT (`upload_url`, with the `upload_headers` the upload must send), good
   for 15 minutes; the file is kept under `files/` in the stack's bucket and may be used by
   runs for 24 hours after it was announced.
2. A run names it in its arguments as `{"file_id": "file_..."}`. When the run is made the
   file is looked up: unknown, not uploaded, expired, or not the size announced is 422 at
   the argument's location; the run's arguments then show the file's reference and
   metadata, never its bytes.
3. The task gets a `File`: `name`, `content_type`, `size`, `read()` and a local `path` (the
   object is fetched into the sandbox's /tmp on first use).
"""

from __future__ import annotations

import os
import re
import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, unquote

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from taskrun import aws
from taskrun.errors import FieldError, InvalidInput
from taskrun.modelbase import Model
from taskrun.models import UtcTime, format_time

MAX_FILE_BYTES = 5 * 1024**3  # one S3 PUT
UPLOAD_LINK_SECONDS = 900
KEEP = timedelta(hours=24)
FILE_ID_PATTERN = r"^file_[0-9a-f]{32}$"
_FILE_ID = re.compile(FILE_ID_PATTERN)


class File(Model):
    """A file a run was given: its reference and metadata, and its bytes on demand."""

    model_config = ConfigDict(json_schema_extra={"x-taskrun-file": True}, title="File")

    file_id: Annotated[str, Field(pattern=FILE_ID_PATTERN, description="From POST /v1/files.")]
    name: str | None = None
    content_type: str | None = None
    size: int | None = None
    _local: Path | None = PrivateAttr(default=None)

    @property
    def path(self) -> Path:
        """The file on local disk (fetched on first use)."""
        if self._local is None:
            target = Path(os.environ.get("TMPDIR", "/tmp")) / "taskrun-files" / self.file_id
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_suffix(".part")
                bucket = os.environ["TASKRUN_FILES_BUCKET"]
                # a client of its own: the task runs in a process forked from the worker's,
                # whose pooled connections must not be shared
                import boto3

                boto3.client("s3").download_file(bucket, _key(self.file_id), str(partial))
                partial.rename(target)
            self._local = target
        return self._local

    def read(self) -> bytes:
        return self.path.read_bytes()


class NewFile(Model):
    """Body of POST /v1/files."""

    model_config = ConfigDict(extra="forbid")

    filename: str = Field(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f/\\]+$")
    content_type: str = Field(default="application/octet-stream", max_length=255, pattern=r"^[\w.+-]+/[\w.+-]+$")
    size: int = Field(ge=1, le=MAX_FILE_BYTES, description="Bytes; the upload must be exactly this size.")


class Upload(Model):
    file_id: str
    upload_url: str
    upload_headers: dict[str, str] = Field(description="Send these headers with the PUT, as they are.")
    expires_at: UtcTime = Field(description="Until when runs may use the file.")


def _key(file_id: str) -> str:
    return f"files/{file_id}"


class FileStore:
    """Uploaded files in the stack's bucket, their metadata on the objects themselves."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket

    def new_upload(self, request: NewFile, now: datetime) -> Upload:
        file_id = f"file_{secrets.token_hex(16)}"
        expires_at = now + KEEP
        metadata = {
            "filename": quote(request.filename, safe=""),
            "size": str(request.size),
            "expires-at": format_time(expires_at),
        }
        headers = {"Content-Type": request.content_type, **{f"x-amz-meta-{k}": v for k, v in metadata.items()}}
        url = aws.client("s3").generate_presigned_url(
            "put_object",
            Params={
                "Bucket": self.bucket,
                "Key": _key(file_id),
                "ContentType": request.content_type,
                "Metadata": {
                    name.removeprefix("x-amz-meta-"): value for name, value in headers.items() if "meta" in name
                },
            },
            ExpiresIn=UPLOAD_LINK_SECONDS,
        )
        return Upload(file_id=file_id, upload_url=url, upload_headers=headers, expires_at=expires_at)

    def put(self, filename: str, content_type: str, data: bytes, now: datetime) -> str:
        """Keep a file sent with the request itself (a form's part); its new file_id."""
        file_id = f"file_{secrets.token_hex(16)}"
        metadata = {
            "filename": quote(filename[:255], safe=""),
            "size": str(len(data)),
            "expires-at": format_time(now + KEEP),
        }
        aws.client("s3").put_object(
            Bucket=self.bucket, Key=_key(file_id), Body=data, ContentType=content_type, Metadata=metadata
        )
        return file_id

    def resolve(self, value: Any, location: str, now: datetime) -> dict[str, Any]:
        """A file argument as the run keeps it (reference and metadata); InvalidInput at
        `location` if it names no file a run may use now."""
        file_id = value.get("file_id") if isinstance(value, dict) else None

        def refuse(reason: str) -> InvalidInput:
            return InvalidInput("a file argument is not usable", [FieldError(location, reason, file_id)])

        if not isinstance(file_id, str) or not _FILE_ID.fullmatch(file_id):
            raise refuse('give {"file_id": ...} from POST /v1/files')
        client = aws.client("s3")
        try:
            head = client.head_object(Bucket=self.bucket, Key=_key(file_id))
        except client.exceptions.ClientError as error:
            # without s3:ListBucket, S3 answers a missing key 403, not 404: either way, no such file
            if aws.error_code(error) in aws.MISSING_OBJECT_CODES:
                raise refuse("no such file: unknown, or not uploaded yet") from None
            raise
        meta = head.get("Metadata", {})
        expires = meta.get("expires-at", "")
        if not expires or expires <= format_time(now):
            raise refuse("the file has expired (files are usable for 24 hours); upload it again")
        size = int(head["ContentLength"])
        if str(size) != meta.get("size") or size > MAX_FILE_BYTES:
            raise refuse(f"the upload is {size:,} bytes, not the {meta.get('size')} announced")
        return {
            "file_id": file_id,
            "name": unquote(meta.get("filename", "")) or None,
            "content_type": head.get("ContentType"),
            "size": size,
        }


def file_parameters(model: type[BaseModel]) -> list[str]:
    """The parameters of an arguments model that take a File (alone or optional)."""
    names = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if annotation is File or File in getattr(annotation, "__args__", ()):
            names.append(name)
    return names
