"""``python -m services.compute``: run one organization's compute service."""

import os

# Compute forks only to exec tasks. With gRPC's fork support on (recent grpcio's default), a fork with a
# preexec_fn runs gRPC's after-fork hooks in the child while other threads use gRPC: a third of the task
# spawns died of SIGSEGV before exec under concurrent RPCs. Off, as gRPC advises for fork+exec; it must be
# set before grpc is imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

from services.compute.bootstrap import build
from services.compute.settings import ComputeSettings
from services.kit.app import main

if __name__ == "__main__":
    main(ComputeSettings, build)
