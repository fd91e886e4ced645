"""Developer tools: the dev network, code generation, benchmarks, sample assets."""

import os

# The dev network, the benchmarks and the tests fork service processes while their own gRPC channels are
# live. With gRPC's fork support on, the forked child restarts gRPC's poller before exec, finds its epoll fd
# closed (close_fds) and aborts ("epoll_wait error: Bad file descriptor"): the service never starts. Off, as
# in the services themselves (services/__init__.py); set before grpc is imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
