"""Storage's rules, free of I/O: what a file record is, what an upload must satisfy, when two uploads
conflict, and who may read or change a file (from the ledger's answers, behind a protocol)."""
