"""A real Kubernetes control plane for the tests: binaries built from Go modules (build.py), run by cluster.py."""
