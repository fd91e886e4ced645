"""``python -m tools.k8s build|path|up`` — build the test binaries, show where they are, or run a cluster by hand."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time

from tools.k8s import build


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.k8s")
    verbs = parser.add_subparsers(dest="verb", required=True)
    verbs.add_parser("build", help="build the binaries into the cache unless they are there (make k8s-tools)")
    verbs.add_parser("path", help="print the cache's bin folder (exit 1 when it is not built)")
    verbs.add_parser("up", help="start a cluster, print its kubeconfig, stop on Ctrl-C")
    verb = parser.parse_args().verb
    if verb == "build":
        return build.main()
    if verb == "path":
        found = build.installed()
        print(found if found else f"not built: {build.home() / 'bin'}")
        return 0 if found else 1
    from tools.k8s.cluster import Cluster

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops it cleanly too, like Ctrl-C
    with Cluster() as cluster, contextlib.suppress(KeyboardInterrupt):
        print(f"export KUBECONFIG={cluster.kubeconfig}  # helm is in {cluster.bin_dir}; Ctrl-C stops", flush=True)
        while True:  # short sleeps: a signal taken by another thread is handled at the next wake-up
            time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
