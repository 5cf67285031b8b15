"""Secrets for tasks: values a task declares it needs (`@task(secrets=["stripe"])`) and reads
with `RunContext.secret("stripe")`, never passed as arguments, so never in a run's record,
list, webhook or error, and masked in its logs.

On AWS they are SSM Parameter Store SecureStrings under the stack's prefix
(`/<stack>/secrets/<name>`, which only the worker's and the flow function's roles may read), read once per
sandbox and kept for SECRET_CACHE_SECONDS. Locally they are the files of a directory
(`.taskrun/secrets/<name>`, or `taskrun local --secrets PATH`: a directory, or a file of
`NAME=value` lines). `taskrun secrets set|list|delete` manages both.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from botocore.exceptions import ClientError

from taskrun import aws
from taskrun.errors import SecretNotFound
from taskrun.private import private_folder, write_private

SECRET_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,128}$"
SECRET_CACHE_SECONDS = 300
MAX_SECRET_BYTES = 4096  # a standard SSM parameter's most


def check_secret_name(name: str) -> str:
    if not re.fullmatch(SECRET_NAME_PATTERN, name):
        raise ValueError(f"secret name {name!r}: 1 to 128 letters, digits, '_', '.' or '-'")
    return name


class SecretStore(Protocol):
    def get(self, name: str) -> str | None: ...

    def put(self, name: str, value: str) -> None: ...

    def names(self) -> list[str]: ...

    def delete(self, name: str) -> bool: ...


def values_of(store: SecretStore | None, names: Sequence[str], whose: str = "task") -> dict[str, str]:
    """The values of the secrets a task (or flow) declares; SecretNotFound names one not set."""
    if not names:
        return {}
    if store is None:
        raise SecretNotFound("this stack keeps no secrets for tasks")
    values = {}
    for name in names:
        value = store.get(name)
        if value is None:
            raise SecretNotFound(f"the {whose}'s secret {name!r} is not set (taskrun secrets set {name})")
        values[name] = value
    return values


class DirectorySecrets:
    """Secrets as the files of a directory (owner only), or the `NAME=value` lines of a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _lines(self) -> dict[str, str]:
        values = {}
        for line in self.path.read_text().splitlines():
            name, found, value = line.partition("=")
            if found and not line.lstrip().startswith("#"):
                values[name.strip()] = value
        return values

    def get(self, name: str) -> str | None:
        check_secret_name(name)
        if self.path.is_file():
            return self._lines().get(name)
        file = self.path / name
        return file.read_text().removesuffix("\n") if file.is_file() else None

    def put(self, name: str, value: str) -> None:
        check_secret_name(name)
        _check_value(value)
        write_private(private_folder(self.path) / name, value)

    def names(self) -> list[str]:
        if self.path.is_file():
            return sorted(self._lines())
        if not self.path.is_dir():
            return []
        return sorted(file.name for file in self.path.iterdir() if file.is_file())

    def delete(self, name: str) -> bool:
        check_secret_name(name)
        file = self.path / name
        if not file.is_file():
            return False
        file.unlink()
        return True


class ParameterSecrets:
    """Secrets as SSM SecureString parameters under a prefix (`/<stack>/secrets/`)."""

    def __init__(self, prefix: str, client: object = None) -> None:
        self.prefix = prefix
        self._client = client

    @property
    def client(self) -> object:
        return self._client or aws.client("ssm")

    def get(self, name: str) -> str | None:
        from aws_lambda_powertools.utilities import parameters

        check_secret_name(name)
        try:
            return str(parameters.get_parameter(self.prefix + name, decrypt=True, max_age=SECRET_CACHE_SECONDS))
        except parameters.exceptions.GetParameterError as error:
            # Powertools raises it inside its handler of the SDK's error (the context, not a cause)
            reason = error.__cause__ or error.__context__
            if isinstance(reason, ClientError) and aws.error_code(reason) == "ParameterNotFound":
                return None
            raise

    def put(self, name: str, value: str) -> None:
        check_secret_name(name)
        _check_value(value)
        self.client.put_parameter(  # type: ignore[attr-defined]
            Name=self.prefix + name, Value=value, Type="SecureString", Overwrite=True
        )

    def names(self) -> list[str]:
        paginator = self.client.get_paginator("get_parameters_by_path")  # type: ignore[attr-defined]
        found = []
        for page in paginator.paginate(Path=self.prefix.rstrip("/"), WithDecryption=False):
            found += [parameter["Name"].removeprefix(self.prefix) for parameter in page["Parameters"]]
        return sorted(found)

    def delete(self, name: str) -> bool:
        check_secret_name(name)
        try:
            self.client.delete_parameter(Name=self.prefix + name)  # type: ignore[attr-defined]
        except ClientError as error:
            if aws.error_code(error) == "ParameterNotFound":
                return False
            raise
        return True


def _check_value(value: str) -> None:
    if not value or len(value.encode()) > MAX_SECRET_BYTES:
        raise ValueError(f"a secret's value is 1 to {MAX_SECRET_BYTES} bytes")
