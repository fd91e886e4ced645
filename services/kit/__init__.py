"""The small kit every Tessera service shares; it holds no domain code.

- :mod:`~services.kit.settings`: typed settings from environment variables.
- :mod:`~services.kit.logs` and :mod:`~services.kit.telemetry`: JSON logs with trace ids, tracing.
- :mod:`~services.kit.errors`: typed domain errors and their ``google.rpc.Status`` form.
- :mod:`~services.kit.identity`: the calling organization, from its credential only.
- :mod:`~services.kit.server` and :mod:`~services.kit.interceptors`: the ``grpc.aio`` server.
- :mod:`~services.kit.client`: channels presenting an organization's credential.
- :mod:`~services.kit.db`: schema-per-service SQLAlchemy, unit of work, Alembic migrations.
- :mod:`~services.kit.nats` and :mod:`~services.kit.subjects`: JetStream streams and subjects.
- :mod:`~services.kit.app`: the ``main`` every composition root calls.
"""
