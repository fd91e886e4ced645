"""Generate the Python bindings of every proto under ``protos/tessera`` into ``gen/python``.

Runs the protoc bundled with the pinned ``grpcio-tools``; the ``google/api`` and ``google/rpc``
imports resolve against the ``.proto`` files shipped in the pinned ``googleapis-common-protos``
wheel, whose Python modules are what the generated code imports at run time. See
``docs/adr/0002-generated-code.md`` for why the output is not committed.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import grpc_tools
from google.api import annotations_pb2  # googleapis-common-protos ships google/api/*.proto beside it
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "protos"
OUT = ROOT / "gen" / "python"


def main() -> int:
    """Regenerate ``gen/python`` from scratch; returns protoc's exit status."""
    sources = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "tessera").rglob("*.proto"))
    if not sources:
        print("no .proto files under protos/tessera", file=sys.stderr)
        return 1
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    googleapis_include = Path(annotations_pb2.__file__).resolve().parents[2]
    well_known_include = Path(grpc_tools.__file__).resolve().parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{googleapis_include}",
        f"-I{well_known_include}",
        f"--python_out={OUT}",
        f"--pyi_out={OUT}",
        f"--grpc_python_out={OUT}",
        # Descriptor sets let the gateway and the tests read annotations without importing modules.
        f"--descriptor_set_out={OUT / 'tessera.binpb'}",
        "--include_imports",
        "--include_source_info",
        *sources,
    ]
    status = protoc.main(args)
    if status != 0:
        return status
    # Make every generated directory an importable regular package.
    for directory in [OUT / "tessera", *(p for p in (OUT / "tessera").rglob("*") if p.is_dir())]:
        (directory / "__init__.py").touch()
    print(f"generated {len(sources)} proto files into {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
