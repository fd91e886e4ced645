"""The HTTP gateway: the Substra REST API over the organization's gRPC services."""
