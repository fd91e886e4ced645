"""The event service: follows the ledger's events for one organization and turns them into work."""
