"""Contact details at rest: Fernet-encrypted with the instance's data key, never in clear."""

from __future__ import annotations

import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from holdshelf.errors import ConfigError


class Sealer:
    def __init__(self, key: str) -> None:
        try:
            self._fernet = Fernet(key.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise ConfigError("data_key is not a Fernet key") from None

    def seal(self, data: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(data).encode("utf-8")).decode("ascii")

    def unseal(self, token: str, ttl: int | None = None) -> dict[str, Any]:
        """The sealed data; ConfigError when the data key has changed since it was sealed, or
        the token is older than ``ttl`` seconds."""
        try:
            return json.loads(self._fernet.decrypt(token.encode("ascii"), ttl=ttl))
        except (InvalidToken, UnicodeEncodeError):
            raise ConfigError("a stored contact cannot be read: was data_key changed?") from None

    def __repr__(self) -> str:
        return "Sealer(key=<hidden>)"
