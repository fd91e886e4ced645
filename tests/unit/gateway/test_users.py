"""The users and tokens rules over an in-memory :class:`~gateway.store.UserStore` (no I/O): the users
file's declarative sync, logins, token expiry and revocation, and the users managed through the API
beside the file (contract §3). The SQL store is exercised by ``tests/gateway`` on PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt

import argon2
import pytest

from gateway.store import API, CREATED_BY_API, FILE, IMPLICIT
from gateway.upstreams import Principal
from gateway.users import Accounts, BadToken, Conflict, Forbidden, Invalid, Missing, UserEntry, token_hash
from gateway.webtokens import Signer
from tests.unit.gateway.memory import MemoryUserStore, Transactions, cheap_hasher

HOUR = dt.timedelta(hours=1)


@pytest.fixture
def store() -> MemoryUserStore:
    return MemoryUserStore()


@pytest.fixture
def accounts(store) -> Accounts:
    return Accounts(Transactions(store), cheap_hasher())


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


# ------------------------------------------------------------------------------ users through the API
ADMIN = Principal(1, "ann", "ADMIN", "c1")


@pytest.fixture
def managed(store) -> Accounts:
    """ann (ADMIN) and bob (USER) of channel c1, and cid (ADMIN) of c2, from the file; a signer for resets."""
    accounts = Accounts(Transactions(store), cheap_hasher(), Signer(b"s" * 32, "MyOrg1MSP"))
    accounts.provision_sync(
        [
            UserEntry("ann", "pw", "ADMIN", "c1"),
            UserEntry("bob", "pw", "USER", "c1"),
            UserEntry("cid", "pw", "ADMIN", "c2"),
        ]
    )
    return accounts


def create(accounts, actor, username, password="a-long-password", role="USER"):
    return accounts.create_user_sync(actor, username, password, role)


def test_only_an_admin_creates_users_in_its_own_channel(managed):
    dan = create(managed, ADMIN, "dan", role="admin")
    assert (dan.role, dan.channel, dan.source) == ("ADMIN", "c1", CREATED_BY_API)
    refused = {
        Forbidden: (Principal(2, "bob", "USER", "c1"), "eve", "a-long-password", "USER"),
        Conflict: (ADMIN, "dan", "a-long-password", "USER"),
        Invalid: (ADMIN, "bad name!", "a-long-password", "USER"),
    }
    for kind, args in refused.items():
        with pytest.raises(kind):
            managed.create_user_sync(*args)
    for password in ("short", None, 42, "x" * 257, "Eve-the-user", "eve-THE-user"):
        with pytest.raises(Invalid, match="password"):
            create(managed, ADMIN, "eve-the-user", password=password)
    with pytest.raises(Invalid, match="role"):
        create(managed, ADMIN, "eve", role="ROOT")
    assert [u.username for u in asyncio.run(managed.list_users(ADMIN))] == ["ann", "bob", "dan"]
    with pytest.raises(Missing):  # another channel's users are unknown here
        asyncio.run(managed.get_user(ADMIN, "cid"))


def test_no_self_deletion_and_never_zero_admins(managed):
    dan = create(managed, ADMIN, "dan", role="ADMIN")
    as_dan = Principal(dan.id, "dan", "ADMIN", "c1")
    with pytest.raises(Conflict, match="own account"):
        asyncio.run(managed.delete_user(as_dan, "dan"))
    # ann comes from the file: the API leaves it alone, so dan is the only admin the API may change.
    with pytest.raises(Conflict, match="users file"):
        asyncio.run(managed.delete_user(as_dan, "ann"))
    erin = create(managed, ADMIN, "erin", role="ADMIN")
    assert asyncio.run(managed.set_role(as_dan, "erin", "USER")).role == "USER"
    asyncio.run(managed.set_role(as_dan, "erin", "ADMIN"))
    assert asyncio.run(managed.delete_user(as_dan, "erin")).id == erin.id
    with pytest.raises(Missing):
        asyncio.run(managed.delete_user(as_dan, "erin"))


def test_the_last_admin_of_a_channel_stays_one(store):
    accounts = Accounts(Transactions(store), cheap_hasher())
    store.add_user("root", "h", "ADMIN", "c1", dt.datetime.now(dt.UTC), CREATED_BY_API)
    root = Principal(1, "root", "ADMIN", "c1")
    with pytest.raises(Conflict, match="last ADMIN"):
        asyncio.run(accounts.set_role(root, "root", "USER"))
    create(accounts, root, "ivy", role="ADMIN")
    ivy = Principal(store.user_by_name("ivy").id, "ivy", "ADMIN", "c1")
    asyncio.run(accounts.set_role(ivy, "root", "USER"))  # two admins: one may go
    with pytest.raises(Forbidden):  # root is no admin anymore
        asyncio.run(accounts.delete_user(Principal(1, "root", "USER", "c1"), "ivy"))
    with pytest.raises(Conflict, match="last ADMIN"):
        asyncio.run(accounts.set_role(ivy, "ivy", "USER"))


def test_the_file_wins_over_the_api_for_the_users_it_names(managed, store):
    create(managed, ADMIN, "dan")
    create(managed, ADMIN, "fay")
    # A restart with the same file keeps the API's users.
    file = [
        UserEntry("ann", "pw", "ADMIN", "c1"),
        UserEntry("bob", "pw", "USER", "c1"),
        UserEntry("cid", "pw", "ADMIN", "c2"),
    ]
    assert managed.provision_sync(file) == {"created": 0, "updated": 0, "removed": 0}
    # The file now names dan: it takes dan over (role, channel, password); the API may no longer change it.
    counts = managed.provision_sync([*file, UserEntry("dan", "file-password", "ADMIN", "c1")])
    assert counts == {"created": 0, "updated": 1, "removed": 0}
    dan = store.user_by_name("dan")
    assert (dan.role, dan.source) == ("ADMIN", FILE) and managed.authenticate_sync("dan", "file-password")
    with pytest.raises(Conflict, match="users file"):
        asyncio.run(managed.set_role(ADMIN, "dan", "USER"))
    with pytest.raises(Conflict, match="users file"):
        asyncio.run(managed.reset_token(ADMIN, "dan"))
    # Dropped from the file, dan goes like any file user; fay (the API's) stays.
    managed.provision_sync(file)
    assert {u.username for u in store.users()} == {"ann", "bob", "cid", "fay"}


def test_a_reset_token_sets_one_password_once(managed, store):
    create(managed, ADMIN, "dan")
    token = asyncio.run(managed.reset_token(ADMIN, "dan"))
    assert asyncio.run(managed.check_reset_token("dan", token)).username == "dan"
    for username, candidate in (("fay", token), ("dan", token + "x"), ("dan", None), ("nobody", token)):
        with pytest.raises(BadToken):
            asyncio.run(managed.check_reset_token(username, candidate))
    _, raw = managed.login_sync("dan", "a-long-password", HOUR)
    with pytest.raises(Invalid):
        managed.set_password_sync("dan", token, "short")
    managed.set_password_sync("dan", token, "a-new-long-password")
    assert managed.authenticate_sync("dan", "a-new-long-password") is not None
    assert asyncio.run(managed.resolve(raw)) is None  # its tokens were revoked
    with pytest.raises(BadToken):  # the password changed: the token is spent
        managed.set_password_sync("dan", token, "yet-another-password")
    with pytest.raises(Forbidden):
        asyncio.run(managed.reset_token(Principal(2, "bob", "USER", "c1"), "dan"))
