"""Store access tokens encrypted at rest (Fernet, key from `STORESYNC_ENCRYPTION_KEY`).

The variable holds one or more comma-separated Fernet keys, newest first: the first encrypts,
every one decrypts (rotation: put the new key first, run `storesync network apply`, which
re-encrypts every stored token with it, then drop the old key). A missing or malformed key is
a `ConfigError` that names the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from storesync.config import ConfigError

ENCRYPTION_KEY_ENV = "STORESYNC_ENCRYPTION_KEY"


class TokenCipher:
    def __init__(self, keys: list[bytes]) -> None:
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def encrypt(self, token: str) -> str:
        return self._fernet.encrypt(token.encode()).decode()

    def decrypt(self, blob: str, *, shop: str = "?") -> str:
        try:
            return self._fernet.decrypt(blob.encode()).decode()
        except InvalidToken:
            raise ConfigError(
                f"the stored access token of {shop} cannot be decrypted with {ENCRYPTION_KEY_ENV} "
                "(wrong key, or the key it was encrypted with was dropped too early)"
            ) from None


def generate_key() -> str:
    return Fernet.generate_key().decode()


def load_cipher(environ: Mapping[str, str] | None = None) -> TokenCipher:
    """The cipher from the environment; ConfigError naming the variable if absent or invalid."""
    raw = (environ if environ is not None else os.environ).get(ENCRYPTION_KEY_ENV, "")
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    if not keys:
        raise ConfigError(
            f"{ENCRYPTION_KEY_ENV} is not set: store access tokens are encrypted at rest with it. "
            "Generate one with `storesync network keygen` and keep it in your secret store"
        )
    for i, k in enumerate(keys):
        try:
            Fernet(k.encode())
        except (ValueError, TypeError):
            raise ConfigError(
                f"{ENCRYPTION_KEY_ENV}: key #{i + 1} is not a Fernet key (32 url-safe base64-encoded bytes; "
                "`storesync network keygen` makes one)"
            ) from None
    return TokenCipher([k.encode() for k in keys])
