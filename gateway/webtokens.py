"""Signed tokens of the web frontend: HS256 JSON Web Tokens written with the standard library.

No JWT library is pinned, and the subset needed is small: one algorithm (HMAC-SHA256), one
header, compact serialization. Verification is strict: the header must be exactly this gateway's
(``alg`` HS256, so ``none`` or another algorithm is refused before any key is used), the
signature is compared in constant time, ``exp`` is required, and ``iss``/``aud`` must name this
organization, so a token minted by another organization's gateway is refused even if both were
given the same key by mistake.

Two kinds of token are signed here:

* **access** tokens (``token_type: access``), the frontend's credential, split across two cookies
  by :mod:`gateway.me`; the session they belong to (``sid``) and the user's role are checked
  against the database on every call by :mod:`gateway.sessions`.
* **password reset** tokens, signed with a key derived from this key *and the user's current
  password hash*: setting a new password changes the hash, so a reset token works once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from typing import Any

HEADER = {"alg": "HS256", "typ": "JWT"}
ACCESS = "access"
PASSWORD_RESET = "password_reset"
MIN_KEY_BYTES = 32
# Longer tokens are refused before any decoding: ours are a few hundred bytes.
MAX_TOKEN_CHARS = 4096


class TokenRefused(Exception):
    """A token that is malformed, forged, foreign, of the wrong type or expired; ``detail`` says which."""

    def __init__(self, detail: str, *, expired: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.expired = expired


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not text or any(c not in _B64_ALPHABET for c in text) or len(text) % 4 == 1:
        raise TokenRefused("The token is invalid")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, binascii.Error):
        raise TokenRefused("The token is invalid") from None


_B64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_ENCODED_HEADER = _b64encode(json.dumps(HEADER, separators=(",", ":")).encode())


class Signer:
    """Signs and verifies the tokens of one organization's gateway with one HMAC key."""

    def __init__(self, key: bytes, organization: str) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the signing key must be at least {MIN_KEY_BYTES} bytes")
        self._key = key
        self.organization = organization

    # ----------------------------------------------------------------------------- compact form
    def _mac(self, signing_input: str, key: bytes) -> str:
        return _b64encode(hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest())

    def _encode(self, claims: dict[str, Any], key: bytes) -> str:
        payload = _b64encode(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        signing_input = f"{_ENCODED_HEADER}.{payload}"
        return f"{signing_input}.{self._mac(signing_input, key)}"

    def _decode(self, token: str, key: bytes, token_type: str, now: float | None) -> dict[str, Any]:
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            raise TokenRefused("The token is invalid")
        header, payload, signature = token.split(".")
        try:
            decoded_header = json.loads(_b64decode(header))
        except ValueError:
            raise TokenRefused("The token is invalid") from None
        if decoded_header != HEADER:
            raise TokenRefused("The token is invalid")
        if not hmac.compare_digest(signature, self._mac(f"{header}.{payload}", key)):
            raise TokenRefused("The token is invalid")
        # Signed by this key: what follows only guards against our own mistakes and foreign issuers.
        try:
            claims = json.loads(_b64decode(payload))
        except ValueError:
            raise TokenRefused("The token is invalid") from None
        if not isinstance(claims, dict):
            raise TokenRefused("The token is invalid")
        if claims.get("iss") != self.organization or claims.get("aud") != self.organization:
            raise TokenRefused("The token was not issued by this organization")
        if claims.get("token_type") != token_type:
            raise TokenRefused("The token is not of the expected type")
        expires = claims.get("exp")
        if not isinstance(expires, int) or isinstance(expires, bool):
            raise TokenRefused("The token is invalid")
        if expires <= (time.time() if now is None else now):
            raise TokenRefused("The token is expired", expired=True)
        return claims

    # ----------------------------------------------------------------------------- access tokens
    def access_token(self, claims: dict[str, Any]) -> str:
        """A signed access token carrying ``claims`` (``exp`` required) plus type, issuer and audience."""
        stamped = {**claims, "token_type": ACCESS, "iss": self.organization, "aud": self.organization}
        return self._encode(stamped, self._key)

    def verify_access(self, token: str, now: float | None = None) -> dict[str, Any]:
        """The claims of a valid access token of this organization; :class:`TokenRefused` otherwise."""
        return self._decode(token, self._key, ACCESS, now)

    # ---------------------------------------------------------------------- password reset tokens
    def _reset_key(self, password_hash: str) -> bytes:
        return hmac.new(self._key, b"password-reset\x00" + password_hash.encode(), hashlib.sha256).digest()

    def reset_token(self, username: str, password_hash: str, expires: int) -> str:
        """A token allowing one new password for ``username`` until ``expires`` (epoch seconds)."""
        claims = {"sub": username, "exp": expires, "token_type": PASSWORD_RESET}
        claims.update(iss=self.organization, aud=self.organization)
        return self._encode(claims, self._reset_key(password_hash))

    def verify_reset(self, token: str, username: str, password_hash: str, now: float | None = None) -> None:
        """Refuse (:class:`TokenRefused`) unless ``token`` resets ``username``'s current password."""
        claims = self._decode(token, self._reset_key(password_hash), PASSWORD_RESET, now)
        if claims.get("sub") != username:
            raise TokenRefused("The token is invalid")
