"""The ledger's stores: on PostgreSQL (``tables``, ``sql``, ``queries``, ``outbox``, gathered per unit of work
by ``repositories``) and in memory (``memory``, for the rule tests)."""
