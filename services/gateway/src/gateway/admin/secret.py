"""The key that signs the panel's CSRF and flash cookies: ADMIN_SECRET_KEY, or in a local run one
generated once under var/ and shared by every gateway process of the machine (a key per process
would refuse a form posted to another process than the one that served it)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from gateway.settings import Settings


def signing_key(settings: Settings) -> str:
    """The panel's signing key (the settings refuse none, or a placeholder, outside local)."""
    if settings.admin_secret_key is not None:
        return settings.admin_secret_key.get_secret_value()
    return _shared_local_key(settings.admin_generated_key_file)


def _shared_local_key(path: Path) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        draft.write_text(secrets.token_urlsafe(32))
        draft.chmod(0o600)
        try:
            # Atomic: the first process to link wins; the others read its key.
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()
