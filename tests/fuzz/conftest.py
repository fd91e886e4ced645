"""The fuzzer's network: the gateway tests' in-process ledger, storage, event and gateways, its own."""

from tests.gateway.conftest import net  # noqa: F401 - the package fixture, started again for this package
