"""The asset service: the network's ledger (Substra's orchestrator).

Layers, dependencies pointing inward: ``server`` (protobuf ⇄ domain) → ``domain`` (the rules;
imports neither grpc nor sqlalchemy) ← ``store`` (SQLAlchemy tables and repositories).
``bootstrap`` is the composition root.
"""
