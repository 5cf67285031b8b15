"""A task that takes secrets: a password marked with Secret() and a pydantic SecretStr."""

import logging
from typing import Annotated

from pydantic import SecretStr

from taskrun import Secret, task


@task("secret/login", timeout=5)
def login(
    user: str, password: Annotated[str, Secret()], token: SecretStr | None = None, fail: bool = False
) -> dict[str, object]:
    """Log in with a password (and maybe a token), printing and logging them as careless code does."""
    print(f"logging in {user} with {password}")
    logging.getLogger("login").warning("token: %s", token.get_secret_value() if token else None)
    if fail:
        raise PermissionError(f"the password {password} was refused")
    return {"user": user, "password_length": len(password), "token": type(token).__name__}
