"""The gateway's :class:`~gateway.store.UserStore` on dicts, for the rules' unit tests (no I/O).

One instance is shared by every transaction and nothing is rolled back: the rules refuse before
they write. The SQL store is exercised on PostgreSQL by ``tests/gateway``."""

from __future__ import annotations

import dataclasses

import argon2

from gateway.store import FILE, RefreshToken, Session, User


class MemoryUserStore:
    """Users, tokens, sessions and refresh tokens in dicts."""

    def __init__(self) -> None:
        self.users_by_id: dict[int, User] = {}
        self.tokens_by_hash: dict[str, tuple[int, object]] = {}
        self.sessions: dict[str, Session] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.locks = 0

    # ------------------------------------------------------------------------------------- users
    def lock_users(self) -> None:
        self.locks += 1

    def users(self) -> list[User]:
        return list(self.users_by_id.values())

    def user_by_name(self, username: str) -> User | None:
        return next((u for u in self.users_by_id.values() if u.username == username), None)

    def user_by_id(self, user_id: int) -> User | None:
        return self.users_by_id.get(user_id)

    def add_user(self, username, password_hash, role, channel, moment, source=FILE) -> None:
        user_id = max(self.users_by_id, default=0) + 1
        self.users_by_id[user_id] = User(user_id, username, password_hash, role, channel, source)

    def update_user(self, user_id, password_hash, role, channel, moment, source=FILE) -> None:
        user = self.users_by_id[user_id]
        self.users_by_id[user_id] = dataclasses.replace(
            user, password_hash=password_hash, role=role, channel=channel, source=source
        )

    def set_role(self, user_id, role, moment) -> None:
        self.users_by_id[user_id] = dataclasses.replace(self.users_by_id[user_id], role=role)

    def set_password_hash(self, user_id, password_hash) -> None:
        self.users_by_id[user_id] = dataclasses.replace(self.users_by_id[user_id], password_hash=password_hash)

    def remove_user(self, user_id) -> None:
        del self.users_by_id[user_id]
        self.delete_tokens(user_id)
        self.delete_sessions(user_id)

    # ------------------------------------------------------------------------------------ tokens
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

    # ---------------------------------------------------------------------------------- sessions
    def add_session(self, session: Session) -> None:
        self.sessions[session.id] = session

    def session_with_user(self, session_id):
        session = self.sessions.get(session_id)
        return None if session is None else (session, self.users_by_id[session.user_id])

    def extend_session(self, session_id, expires_at) -> None:
        self.sessions[session_id] = dataclasses.replace(self.sessions[session_id], expires_at=expires_at)

    def delete_session(self, session_id) -> None:
        self.sessions.pop(session_id, None)
        for key, token in list(self.refresh_tokens.items()):
            if token.session_id == session_id:
                del self.refresh_tokens[key]

    def delete_sessions(self, user_id, *, expired_at=None) -> None:
        for session in list(self.sessions.values()):
            if session.user_id == user_id and (expired_at is None or session.expires_at <= expired_at):
                self.delete_session(session.id)

    def add_refresh_token(self, token: RefreshToken) -> None:
        self.refresh_tokens[token.token_hash] = token

    def refresh_token_for_update(self, token_hash):
        return self.refresh_tokens.get(token_hash)

    def mark_refresh_token_used(self, token_hash, moment) -> None:
        self.refresh_tokens[token_hash] = dataclasses.replace(self.refresh_tokens[token_hash], used_at=moment)

    def purge_refresh_tokens(self, session_id, expired_at) -> None:
        for key, token in list(self.refresh_tokens.items()):
            if token.session_id == session_id and token.expires_at <= expired_at:
                del self.refresh_tokens[key]


class Transactions:
    """What the rules need of a unit of work: run a function on the store."""

    def __init__(self, store: MemoryUserStore) -> None:
        self.store = store

    def run_sync(self, work):
        return work(self.store)

    async def run(self, work):
        return work(self.store)


def cheap_hasher() -> argon2.PasswordHasher:
    """The cheapest argon2id parameters: the rules, not the hash's cost, are under test."""
    return argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
