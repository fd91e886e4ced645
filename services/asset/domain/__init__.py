"""The ledger's rules, free of I/O: validation, ownership, permissions and state machines."""
