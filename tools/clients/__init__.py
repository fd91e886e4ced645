"""The generated Go and TypeScript clients: their tools, cached by version, and their generation (ADR 0013)."""
