"""The Tessera image: its build with podman (``make image``) and a base made from Debian's packages.

See :mod:`tools.image.build` and ``docs/adr/0011-image.md``.
"""
