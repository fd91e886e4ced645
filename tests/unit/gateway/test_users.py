"""The users and tokens rules over an in-memory :class:`~gateway.store.UserStore` (no I/O): the users
file's declarative sync, logins, token expiry and revocation. The SQL store is exercised by
``tests/gateway/test_auth.py`` on PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

import argon2
import pytest

from gateway.store import API, IMPLICIT, Token, User
from gateway.users import Accounts, UserEntry, token_hash

HOUR = dt.timedelta(hours=1)


class MemoryUserStore:
    """The store protocol on dicts (one instance shared by every transaction: no rollback needed here)."""

    def __init__(self) -> None:
        self.users_by_id: dict[int, User] = {}
        self.tokens_by_hash: dict[str, tuple[int, Token]] = {}
        self.locks = 0

    def lock_users(self) -> None:
        self.locks += 1

    def users(self) -> list[User]:
        return list(self.users_by_id.values())

    def user_by_name(self, username: str) -> User | None:
        return next((u for u in self.users_by_id.values() if u.username == username), None)

    def add_user(self, username, password_hash, role, channel, moment) -> None:
        user_id = max(self.users_by_id, default=0) + 1
        self.users_by_id[user_id] = User(user_id, username, password_hash, role, channel)

    def update_user(self, user_id, password_hash, role, channel, moment) -> None:
        user = self.users_by_id[user_id]
        self.users_by_id[user_id] = dataclasses.replace(user, password_hash=password_hash, role=role, channel=channel)

    def set_password_hash(self, user_id, password_hash) -> None:
        self.users_by_id[user_id] = dataclasses.replace(self.users_by_id[user_id], password_hash=password_hash)

    def remove_user(self, user_id) -> None:
        del self.users_by_id[user_id]
        self.delete_tokens(user_id)

    def add_token(self, user_id, token, token_hash) -> None:
        self.tokens_by_hash[token_hash] = (user_id, token)

    def token_by_hash(self, token_hash):
        found = self.tokens_by_hash.get(token_hash)
        return None if found is None else (self.users_by_id[found[0]], found[1])

    def tokens(self, user_id, valid_at):
        mine = [t for u, t in self.tokens_by_hash.values() if u == user_id]
        return sorted((t for t in mine if t.expires_at is None or t.expires_at > valid_at), key=lambda t: t.created_at)

    def delete_tokens(self, user_id, *, expired_at=None) -> None:
        for key, (owner, token) in list(self.tokens_by_hash.items()):
            expired = expired_at is None or (token.expires_at is not None and token.expires_at <= expired_at)
            if owner == user_id and expired:
                del self.tokens_by_hash[key]

    def delete_token(self, user_id, token_id) -> bool:
        for key, (owner, token) in list(self.tokens_by_hash.items()):
            if owner == user_id and token.id == token_id:
                del self.tokens_by_hash[key]
                return True
        return False


class Transactions:
    """What :class:`Accounts` needs of a unit of work: run a function on the store."""

    def __init__(self, store: MemoryUserStore) -> None:
        self.store = store

    def run_sync(self, work):
        return work(self.store)

    async def run(self, work):
        return work(self.store)


@pytest.fixture
def store() -> MemoryUserStore:
    return MemoryUserStore()


@pytest.fixture
def accounts(store) -> Accounts:
    # The cheapest argon2id parameters: the rules, not the hash's cost, are under test.
    return Accounts(Transactions(store), argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


def test_provisioning_makes_the_users_equal_to_the_file(accounts, store):
    first = [UserEntry("ann", "pw1", "ADMIN", "c1"), UserEntry("ben", "pw2", "USER", "c1")]
    assert accounts.provision_sync(first) == {"created": 2, "updated": 0, "removed": 0}
    assert accounts.provision_sync(first) == {"created": 0, "updated": 0, "removed": 0}
    assert store.locks == 2  # every provisioning waits for the others
    ann = store.user_by_name("ann")
    assert ann.password_hash.startswith("$argon2id$") and "pw1" not in ann.password_hash
    # A role or channel change is an update that keeps the password and the tokens.
    _, raw = accounts.login_sync("ann", "pw1", HOUR)
    counts = accounts.provision_sync([UserEntry("ann", "pw1", "USER", "c2"), first[1]])
    assert counts == {"created": 0, "updated": 1, "removed": 0}
    assert store.user_by_name("ann").password_hash == ann.password_hash
    assert asyncio.run(accounts.resolve(raw)) is not None
    # A new password revokes the tokens; an absent user is removed with its tokens.
    accounts.login_sync("ben", "pw2", HOUR)
    counts = accounts.provision_sync([UserEntry("ann", "new", "USER", "c2")])
    assert counts == {"created": 0, "updated": 1, "removed": 1}
    assert [u.username for u in store.users()] == ["ann"] and store.tokens_by_hash == {}
    assert accounts.login_sync("ann", "pw1", HOUR) is None
    assert accounts.login_sync("ann", "new", HOUR) is not None


def test_a_login_makes_an_implicit_token_kept_as_its_hash_only(accounts, store):
    accounts.provision_sync([UserEntry("ann", "pw", "ADMIN", "c1")])
    assert accounts.login_sync("ann", "wrong", HOUR) is None
    assert accounts.login_sync("nobody", "pw", HOUR) is None
    token, raw = accounts.login_sync("ann", "pw", HOUR)
    assert token.kind == IMPLICIT and token.expires_at - token.created_at == HOUR
    assert list(store.tokens_by_hash) == [token_hash(raw)] and len(raw) == 40
    principal, expires_at = asyncio.run(accounts.resolve(raw))
    assert (principal.username, principal.role, principal.channel, principal.token_id) == (
        "ann",
        "ADMIN",
        "c1",
        token.id,
    )
    assert expires_at == token.expires_at
    assert asyncio.run(accounts.resolve("0" * 40)) is None


def test_a_login_purges_the_expired_tokens_and_lists_the_valid_ones(accounts, store):
    accounts.provision_sync([UserEntry("ann", "pw", "ADMIN", "c1")])
    user_id = store.user_by_name("ann").id
    past = dt.datetime.now(dt.UTC) - HOUR
    asyncio.run(accounts.create_token(user_id, API, past, "old"))
    named, _ = asyncio.run(accounts.create_token(user_id, API, None, "ci"))
    assert [t.id for t in asyncio.run(accounts.tokens(user_id))] == [named.id]
    assert len(store.tokens_by_hash) == 2
    implicit, _ = accounts.login_sync("ann", "pw", HOUR)
    assert {t.id for _, t in store.tokens_by_hash.values()} == {named.id, implicit.id}
    assert asyncio.run(accounts.delete_token(user_id, named.id)) is True
    assert asyncio.run(accounts.delete_token(user_id, named.id)) is False
    assert [t.id for t in asyncio.run(accounts.tokens(user_id))] == [implicit.id]


def test_a_login_rehashes_a_password_hashed_with_older_parameters(store):
    old = Accounts(Transactions(store), argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    old.provision_sync([UserEntry("ann", "pw", "ADMIN", "c1")])
    before = store.user_by_name("ann").password_hash
    new = Accounts(Transactions(store), argon2.PasswordHasher(time_cost=2, memory_cost=8, parallelism=1))
    assert new.login_sync("ann", "pw", HOUR) is not None
    after = store.user_by_name("ann").password_hash
    assert after != before and "t=2" in after
