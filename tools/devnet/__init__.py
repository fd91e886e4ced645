"""The dev network: embedded PostgreSQL and NATS plus every Tessera service, on one machine."""
