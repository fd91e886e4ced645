"""Tessera's back-end services: one package per domain plus the shared ``kit``."""

import os

# Every process of ours forks only to exec (task jails, migrations in a child, the dev network). With gRPC's
# fork support on (recent grpcio's default), a fork runs gRPC's after-fork hooks in the child while other
# threads use gRPC: compute's task spawns died of SIGSEGV before exec, and a child restarting gRPC's poller
# after close_fds aborts with "epoll_wait error: Bad file descriptor" before it can exec. Off, as gRPC
# advises for fork+exec; it must be set before grpc is imported, hence here, the first module any
# `python -m services.<name>` imports.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
