"""`taskrun secrets`: the tasks' secrets, in the local stack's folder or a stack's SSM parameters."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from taskrun.cli.base import (
    JsonOption,
    SecretsDirOption,
    StackOption,
    fail,
    out,
    print_json,
    secrets_app,
)


def _secret_store(stack: str | None, directory: Path) -> Any:
    from taskrun.catalog.secrets import DirectorySecrets, ParameterSecrets

    if stack is None:
        return DirectorySecrets(directory)
    import boto3  # the user's own AWS configuration, as the AWS CLI reads it

    return ParameterSecrets(f"/{stack}/secrets/", boto3.session.Session().client("ssm"))


def _on_secrets(action: Callable[[], Any]) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    try:
        return action()
    except ValueError as error:
        fail(str(error), 2)
    except NoCredentialsError:
        fail("no AWS credentials: set AWS_PROFILE or run `aws configure`")
    except NoRegionError:
        fail("no AWS region: set AWS_REGION or run `aws configure`")
    except (BotoCoreError, ClientError, OSError) as error:
        fail(str(error))


@secrets_app.command("set", epilog='Example: printf %s "$STRIPE_KEY" | taskrun secrets set stripe')
def secrets_set(
    name: str,
    value: Annotated[
        str | None, typer.Option(help="The value (else read from stdin, so that it stays out of your history).")
    ] = None,
    stack: StackOption = None,
    directory: SecretsDirOption = Path(".taskrun/secrets"),
) -> None:
    """Set a secret tasks declare (`@task(secrets=[NAME])`); the next runs read it."""
    text = value if value is not None else sys.stdin.read().removesuffix("\n")
    _on_secrets(lambda: _secret_store(stack, directory).put(name, text))
    out.print(f"{name} set", markup=False)


@secrets_app.command("list", epilog="Example: taskrun secrets list")
def secrets_list(
    stack: StackOption = None, directory: SecretsDirOption = Path(".taskrun/secrets"), as_json: JsonOption = False
) -> None:
    """The secrets' names (never their values); with --json, a JSON list of them."""
    names = _on_secrets(lambda: _secret_store(stack, directory).names())
    if as_json:
        print_json(names)
        return
    for name in names:
        out.print(name, markup=False)


@secrets_app.command("delete", epilog="Example: taskrun secrets delete stripe")
def secrets_delete(
    name: str, stack: StackOption = None, directory: SecretsDirOption = Path(".taskrun/secrets")
) -> None:
    """Delete a secret; runs of tasks that declare it then fail before they start."""
    if not _on_secrets(lambda: _secret_store(stack, directory).delete(name)):
        fail(f"no secret {name!r}")
    out.print(f"{name} deleted", markup=False)
