"""`taskrun keys`: API keys, made over the API or written straight into a new stack's table."""

from __future__ import annotations

from typing import Annotated

import typer

from taskrun.cli.base import (
    JsonOption,
    api,
    err,
    fail,
    keys_app,
    out,
    print_json,
    print_table,
    table,
)


@keys_app.command(
    "create",
    epilog=(
        "Example: taskrun keys create --name reports-bot --scope runs:read --scope runs:write --task 'reports/*'"
        "  (or --table T on a new stack)"
    ),
)
def keys_create(
    name: Annotated[str, typer.Option(help="What the key is for.")] = "",
    admin: Annotated[bool, typer.Option("--admin", help="Every scope, managing keys included.")] = False,
    scope: Annotated[
        list[str] | None,
        typer.Option(
            help="A scope (repeatable): runs:write, runs:read, schedules:write, schedules:read, admin;"
            " by default all but admin."
        ),
    ] = None,
    task: Annotated[
        list[str] | None,
        typer.Option(help="Limit the key to a task id or a prefix ending in * (repeatable); by default every task."),
    ] = None,
    table: Annotated[
        str | None,
        typer.Option(
            help="Write the key straight into this KeysTable with your AWS credentials (a new stack's first key)."
        ),
    ] = None,
) -> None:
    """Make a key; it is printed only now."""
    from taskrun.access.scopes import ALL_SCOPES, DEFAULT_SCOPES

    scopes: list[str] = list(ALL_SCOPES) if admin else list(scope or DEFAULT_SCOPES)
    if unknown := sorted(set(scopes) - set(ALL_SCOPES)):
        fail(f"unknown scope {unknown[0]!r}: use {', '.join(ALL_SCOPES)}")
    tasks = list(task or [])
    if table:
        key_id, secret = _key_into_table(table, name, scopes, tasks)
    else:
        with api() as client:
            made = client.create_key(name, scopes, tasks)
        key_id, secret = made["key_id"], made["key"]
    err.print(f"key_id: {key_id} (the key is shown only now)", markup=False)
    out.print(secret, markup=False)


def _key_into_table(table: str, name: str, scopes: list[str], tasks: list[str]) -> tuple[str, str]:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError
    from pydantic import ValidationError

    from taskrun.access.keys import DynamoKeyStore, NewKeyRequest, new_key

    try:
        NewKeyRequest(name=name, tasks=tasks)  # type: ignore[arg-type]  # validated here: the API is not asked
    except ValidationError as error:
        fail(f"not a valid key: {error.errors()[0]['msg']} ({error.errors()[0]['input']!r})")
    secret, record = new_key(name=name, scopes=scopes, tasks=tasks)
    try:
        import boto3  # the user's own AWS configuration, as the AWS CLI reads it

        DynamoKeyStore(table, boto3.session.Session().resource("dynamodb").Table(table)).put(record)
    except NoRegionError:
        fail("no AWS region: set AWS_DEFAULT_REGION, or a region in your AWS profile")
    except NoCredentialsError:
        fail("no AWS credentials: set AWS_PROFILE or run `aws configure`")
    except ClientError as error:
        detail = error.response.get("Error", {})
        fail(f"AWS refused: {detail.get('Code', 'error')}: {detail.get('Message', error)}")
    except (BotoCoreError, ValueError) as error:  # a malformed region makes an endpoint boto3 refuses
        fail(f"AWS: {error}")
    return record.key_id, secret


@keys_app.command("list", epilog="Example: taskrun keys list")
def keys_list(as_json: JsonOption = False) -> None:
    """The keys (never their secrets)."""
    with api() as client:
        found = client.keys()
    if as_json:
        print_json(found)
        return
    shown = table("key", "name", "scopes", "tasks", "created", "revoked")
    for item in found:
        revoked = "revoked" if item["revoked"] else ""
        tasks = " ".join(item.get("tasks") or []) or "every task"
        shown.add_row(item["key_id"], item["name"], " ".join(item["scopes"]), tasks, item["created_at"], revoked)
    print_table(shown)


@keys_app.command("revoke", epilog="Example: taskrun keys revoke key_0123456789abcdef")
def keys_revoke(key_id: str) -> None:
    """Revoke a key: refused within the stack's KeyCacheSeconds (60 s by default)."""
    with api() as client:
        client.revoke_key(key_id)
    out.print(f"{key_id} revoked", markup=False)
