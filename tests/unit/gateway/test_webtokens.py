"""The signed tokens of the web frontend (no I/O): what a valid token carries, and every way a token
is refused: forged, tampered, of another algorithm, another organization or type, expired, malformed;
password reset tokens that work once."""

from __future__ import annotations

import base64
import json
import time

import pytest

from gateway.webtokens import Signer, TokenRefused

KEY = b"k" * 32
ORG = "MyOrg1MSP"


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(**extra) -> dict:
    return {"exp": int(time.time()) + 60, "user_id": 1, "sid": "s", "role": "ADMIN", **extra}


def test_an_access_token_round_trips_with_type_issuer_and_audience():
    signer = Signer(KEY, ORG)
    token = signer.access_token(_claims())
    header, _payload, _ = token.split(".")
    assert json.loads(base64.urlsafe_b64decode(header + "==")) == {"alg": "HS256", "typ": "JWT"}
    claims = signer.verify_access(token)
    assert claims["token_type"] == "access" and claims["iss"] == claims["aud"] == ORG and claims["user_id"] == 1


def test_forged_tampered_and_foreign_tokens_are_refused():
    signer = Signer(KEY, ORG)
    token = signer.access_token(_claims())
    header, payload, signature = token.split(".")
    refused = {
        "another key": Signer(b"x" * 32, ORG).access_token(_claims()),
        "another organization, same key": Signer(KEY, "MyOrg2MSP").access_token(_claims()),
        "a payload made an admin": f"{header}.{_b64({**signer.verify_access(token), 'user_id': 2})}.{signature}",
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        "alg none, signature kept": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.{signature}",
        "HS512 claimed": f"{_b64({'alg': 'HS512', 'typ': 'JWT'})}.{payload}.{signature}",
        "two parts": f"{header}.{payload}",
        "four parts": f"{token}.x",
        "not base64": f"{header}.{payload}.!!!",
        "padding": f"{header}.{payload}.{signature}==",
        "huge": "a" * 5000 + ".b.c",
        "empty": "",
    }
    for case, candidate in refused.items():
        with pytest.raises(TokenRefused):
            signer.verify_access(candidate)
            pytest.fail(case)


def test_expiry_and_type_are_required():
    signer = Signer(KEY, ORG)
    with pytest.raises(TokenRefused) as info:
        signer.verify_access(signer.access_token(_claims(exp=int(time.time()) - 1)))
    assert info.value.expired and info.value.detail == "The token is expired"
    for claims in ({"user_id": 1}, _claims(exp="soon"), _claims(exp=True)):
        with pytest.raises(TokenRefused):
            signer.verify_access(signer.access_token(claims))
    with pytest.raises(TokenRefused):  # a reset token is no access token (its key differs too)
        signer.verify_access(signer.reset_token("ann", "hash", int(time.time()) + 60))
    # Even signed with the access key, another type is refused.
    other = signer._encode({**_claims(), "token_type": "refresh", "iss": ORG, "aud": ORG}, KEY)
    with pytest.raises(TokenRefused, match="type"):
        signer.verify_access(other)


def test_a_reset_token_works_for_one_user_and_one_password():
    signer = Signer(KEY, ORG)
    token = signer.reset_token("ann", "$argon2id$old", int(time.time()) + 60)
    signer.verify_reset(token, "ann", "$argon2id$old")
    for username, password_hash in (("ann", "$argon2id$new"), ("ben", "$argon2id$old")):
        with pytest.raises(TokenRefused):
            signer.verify_reset(token, username, password_hash)
    expired = signer.reset_token("ann", "$argon2id$old", int(time.time()) - 1)
    with pytest.raises(TokenRefused, match="expired"):
        signer.verify_reset(expired, "ann", "$argon2id$old")


def test_short_keys_are_refused():
    with pytest.raises(ValueError):
        Signer(b"short", ORG)
