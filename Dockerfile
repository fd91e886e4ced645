# The one Tessera image: all five services; the arguments choose which one runs (ENTRYPOINT is `python -m`):
#   podman run tessera:<version> services.asset      (also services.storage, services.compute, services.event)
#   podman run tessera:<version> gateway
# The charts set the whole command instead: ["python", "-m", "<module>"]. See docs/adr/0011-image.md.
#
# Build it with `make image` (tools/image): the wheels of requirements.lock are downloaded on the host and given
# to the build as the extra build context `wheels`, so nothing inside the build reaches the network:
#   podman build --network=none --build-context wheels=<dir of wheels> --build-arg BASE_IMAGE=<image> -t tessera .
#
# BASE_IMAGE: any image with Debian bookworm's glibc (2.36) or newer and CPython 3.11 as `python3`, with the
# venv module and ensurepip (the compute service makes virtualenvs for functions). Point it at a mirror with
# `make image BASE_IMAGE=registry.example.org/library/python:3.11-slim-bookworm`.
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------------- build
FROM ${BASE_IMAGE} AS build
WORKDIR /src
COPY requirements.lock tools/image/dev-only.txt /src/
# Every pinned dependency, from the host's wheels only; then the generated protos; then the tools that only
# development uses (tests, linters, embedded servers) are removed and the remaining set is checked.
RUN --mount=type=bind,from=wheels,target=/wheels \
    python3 -c 'import sys; assert sys.version_info[:2] == (3, 11), f"BASE_IMAGE has Python {sys.version}, the wheels are cp311"' \
 && python3 -m venv /opt/tessera/venv \
 && /opt/tessera/venv/bin/pip install --no-index --find-links /wheels --no-cache-dir --disable-pip-version-check \
      --quiet -r requirements.lock
COPY protos /src/protos
COPY tools/codegen /src/tools/codegen
RUN /opt/tessera/venv/bin/python tools/codegen/gen.py \
 && /opt/tessera/venv/bin/pip uninstall --yes --quiet --disable-pip-version-check -r dev-only.txt \
 && /opt/tessera/venv/bin/pip check --disable-pip-version-check \
 && printf '/opt/tessera/app\n/opt/tessera/app/gen/python\n' \
      > "$(/opt/tessera/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/tessera.pth" \
 && find /opt/tessera/venv /src/gen -name __pycache__ -prune -exec rm -rf {} +

# ---------------------------------------------------------------------------------------------------- final
FROM ${BASE_IMAGE}
ARG TESSERA_UID=10001
# The service user (the charts' runAsUser/runAsGroup), written directly so the base needs no useradd. The image
# refuses a base that brings a compiler: nothing in it needs one.
RUN for tool in gcc cc c++ g++ clang tcc; do \
      if command -v "$tool" >/dev/null; then echo "BASE_IMAGE holds a compiler ($tool); use a runtime image" >&2; exit 1; fi; \
    done \
 && echo "tessera:x:${TESSERA_UID}:${TESSERA_UID}:Tessera:/home/tessera:/usr/sbin/nologin" >> /etc/passwd \
 && echo "tessera:x:${TESSERA_UID}:" >> /etc/group \
 && mkdir -p /home/tessera /var/lib/tessera/storage /var/lib/tessera/compute /var/lib/tessera/servermedias \
 && chown -R "${TESSERA_UID}:${TESSERA_UID}" /home/tessera /var/lib/tessera
COPY --from=build /opt/tessera/venv /opt/tessera/venv
COPY --from=build /src/gen/python /opt/tessera/app/gen/python
COPY services /opt/tessera/app/services
COPY gateway /opt/tessera/app/gateway
ENV PATH=/opt/tessera/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/tessera \
    LANG=C.UTF-8
WORKDIR /opt/tessera/app
USER ${TESSERA_UID}:${TESSERA_UID}
LABEL org.opencontainers.image.title="tessera" \
      org.opencontainers.image.description="Tessera services; run with: services.asset | services.storage | services.compute | services.event | gateway"
ENTRYPOINT ["python", "-m"]
