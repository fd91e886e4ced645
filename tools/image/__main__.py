"""``python -m tools.image``: build the image (``build``), or only the Debian base (``base``) or the wheels."""

from __future__ import annotations

import argparse
import sys
import time

from tools.image import build


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.image", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("build", help="build tessera:<version> with podman")
    make.add_argument(
        "--base",
        default="",
        help="BASE_IMAGE (e.g. a mirror of python:3.11-slim-bookworm); empty: a base made here with debootstrap",
    )
    make.add_argument("--tag", default="", help="image tag (default: git describe, else the lock file's hash)")
    commands.add_parser("base", help="make the Debian base with debootstrap and print its name")
    commands.add_parser("wheels", help="download the lock file's wheels and print their folder")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        if args.command == "base":
            print(build.debian_base())
        elif args.command == "wheels":
            print(build.download_wheels())
        else:
            base = args.base or build.debian_base()
            print(build.build_image(base, args.tag or None))
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"done in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
