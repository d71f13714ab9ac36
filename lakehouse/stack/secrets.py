"""Secrets of the local stack: from the environment, else generated once per machine.

Nothing secret is ever committed. A deployment sets every variable (docker-compose.yml refuses
to start without them); on a developer machine an unset one is generated on first use into
`<state_dir>/secrets/<VARIABLE>` (mode 0600), so the one-command demo works without a shared
default password.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from lakehouse.config import Config


def secret_file(config: Config, variable: str) -> Path:
    return config.state_path / "secrets" / variable


def local_secret(config: Config, variable: str) -> str:
    """$variable if set, else the value generated for this state folder (created on first use)."""
    value = os.environ.get(variable)
    if value:
        return value
    path = secret_file(config, variable)
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    value = secrets.token_urlsafe(24)
    # O_EXCL: two processes generating at once cannot overwrite each other's value.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def describe(config: Config, variable: str) -> str:
    """Where a user finds the secret: the variable, or the generated file."""
    if os.environ.get(variable):
        return f"${variable}"
    return str(secret_file(config, variable))
