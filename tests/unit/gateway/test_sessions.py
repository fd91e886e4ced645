"""The web frontend's sessions over the in-memory store (no I/O): a login's tokens, rotation, a replayed
refresh token revoking its family, the grace for parallel refreshes, logout, and access tokens that stop
working when their session ends or their user changes."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from gateway.sessions import SessionRefused, Sessions, refresh_hash
from gateway.store import CREATED_BY_API
from gateway.upstreams import Principal
from gateway.users import Accounts, UserEntry
from gateway.webtokens import Signer
from tests.unit.gateway.memory import MemoryUserStore, Transactions, cheap_hasher

ORG = "MyOrg1MSP"


@pytest.fixture
def store() -> MemoryUserStore:
    return MemoryUserStore()


@pytest.fixture
def signer() -> Signer:
    return Signer(b"s" * 32, ORG)


@pytest.fixture
def accounts(store, signer) -> Accounts:
    accounts = Accounts(Transactions(store), cheap_hasher(), signer)
    accounts.provision_sync([UserEntry("ann", "pw", "ADMIN", "c1")])
    return accounts


def make(store, accounts, signer, grace: float = 0.0) -> Sessions:
    return Sessions(
        Transactions(store), accounts, signer, dt.timedelta(hours=24), dt.timedelta(days=7), dt.timedelta(seconds=grace)
    )


@pytest.fixture
def sessions(store, accounts, signer) -> Sessions:
    return make(store, accounts, signer)


def principal(sessions: Sessions, signer: Signer, access: str) -> Principal:
    return asyncio.run(sessions.principal(signer.verify_access(access)))


def test_a_login_opens_a_session_with_an_access_and_a_refresh_token(sessions, signer, store):
    assert sessions.login_sync("ann", "wrong") is None and sessions.login_sync("nobody", "pw") is None
    issued = sessions.login_sync("ann", "pw")
    assert set(issued.public_claims()) == {"token_type", "exp", "iat", "jti", "user_id"}
    assert issued.claims["exp"] - issued.claims["iat"] == 24 * 3600
    assert issued.refresh_expires - issued.access_expires == dt.timedelta(days=6)
    assert list(store.refresh_tokens) == [refresh_hash(issued.refresh)]  # kept as its hash only
    assert principal(sessions, signer, issued.access).username == "ann"


def test_refresh_rotates_and_a_replay_revokes_the_whole_family(sessions, signer, store):
    first = sessions.login_sync("ann", "pw")
    other = sessions.login_sync("ann", "pw")  # another browser: another family
    second = asyncio.run(sessions.refresh(first.refresh))
    assert second.refresh != first.refresh and second.claims["jti"] != first.claims["jti"]
    assert principal(sessions, signer, second.access).username == "ann"
    with pytest.raises(SessionRefused, match="already used"):
        asyncio.run(sessions.refresh(first.refresh))
    # Every token of the family is dead: the rotated one, its successor, and their access tokens.
    for refresh in (first.refresh, second.refresh):
        with pytest.raises(SessionRefused, match="invalid or revoked"):
            asyncio.run(sessions.refresh(refresh))
    for access in (first.access, second.access):
        with pytest.raises(SessionRefused, match="ended"):
            principal(sessions, signer, access)
    # The other family lives on.
    assert asyncio.run(sessions.refresh(other.refresh)) is not None


def test_parallel_refreshes_within_the_grace_get_siblings(store, accounts, signer):
    sessions = make(store, accounts, signer, grace=30)
    first = sessions.login_sync("ann", "pw")
    a = asyncio.run(sessions.refresh(first.refresh))
    b = asyncio.run(sessions.refresh(first.refresh))  # the same cookie, a second request of the page
    assert a.refresh != b.refresh
    for issued in (a, b):
        assert asyncio.run(sessions.refresh(issued.refresh)) is not None


def test_expired_unknown_and_missing_refresh_tokens(sessions, store):
    issued = sessions.login_sync("ann", "pw")
    for raw in ("", "x" * 300, "unknown"):
        with pytest.raises(SessionRefused):
            asyncio.run(sessions.refresh(raw))
    key = refresh_hash(issued.refresh)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    store.refresh_tokens[key] = store.refresh_tokens[key].__class__(key, issued.claims["sid"], past, past)
    with pytest.raises(SessionRefused, match="expired"):
        asyncio.run(sessions.refresh(issued.refresh))


def test_logout_ends_the_session_and_its_access_tokens(sessions, signer):
    issued = sessions.login_sync("ann", "pw")
    asyncio.run(sessions.logout(issued.refresh))
    asyncio.run(sessions.logout("unknown"))  # nothing to end: no error
    with pytest.raises(SessionRefused):
        principal(sessions, signer, issued.access)
    with pytest.raises(SessionRefused):
        asyncio.run(sessions.refresh(issued.refresh))


def test_access_tokens_follow_the_user_role_existence_and_password(sessions, signer, accounts, store):
    admin = Principal(1, "ann", "ADMIN", "c1")
    ben = asyncio.run(asyncio.to_thread(accounts.create_user_sync, admin, "ben", "a-long-password", "ADMIN"))
    assert ben.source == CREATED_BY_API
    issued = sessions.login_sync("ben", "a-long-password")
    asyncio.run(accounts.set_role(admin, "ben", "USER"))
    with pytest.raises(SessionRefused, match="role"):
        principal(sessions, signer, issued.access)
    refreshed = asyncio.run(sessions.refresh(issued.refresh))  # a refresh carries the new role
    assert principal(sessions, signer, refreshed.access).role == "USER"
    # A new password ends every session.
    token = asyncio.run(accounts.reset_token(admin, "ben"))
    accounts.set_password_sync("ben", token, "another-long-password")
    with pytest.raises(SessionRefused):
        principal(sessions, signer, refreshed.access)
    # A deleted user's token stops working.
    again = sessions.login_sync("ben", "another-long-password")
    asyncio.run(accounts.delete_user(admin, "ben"))
    with pytest.raises(SessionRefused):
        principal(sessions, signer, again.access)
    assert all(s.user_id != ben.id for s in store.sessions.values())


def test_claims_the_sessions_do_not_know_are_refused(sessions, signer):
    issued = sessions.login_sync("ann", "pw")
    claims = signer.verify_access(issued.access)
    for forged in ({**claims, "sid": "other"}, {**claims, "user_id": 99}, {**claims, "sid": None}):
        with pytest.raises(SessionRefused):
            asyncio.run(sessions.principal(forged))
