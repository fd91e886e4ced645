"""Storage benchmark: upload and download a 1 GiB file over loopback gRPC, beside a plain socket copy.

Every party is its own process, so that each one's peak memory is its own (``VmHWM`` from /proc):

* the storage service (``python -m services.storage``) on an embedded PostgreSQL, fsync on;
* the gRPC client (this module with ``--grpc-client``, through ``services.kit.storage.client.FastCalls``):
  one Upload of the file (read from disk in 256 KiB chunks; the service hashes, writes, fsyncs and
  commits it), then one Download into a file;
* gRPC alone (``--transport-server``, ``--transport-client``): the same chunk streams from memory to
  memory, without disk, hashing, database or service code: the ceiling of the transport itself;
* the baseline (``--raw-sink`` and ``--raw-send``): the same bytes read from the same file, sent over a
  plain loopback TCP socket and written to a file by the receiver, once with an fsync before the
  receiver acknowledges (to compare with Upload, which is durable when it returns) and once without
  (to compare with Download, whose client does not fsync).

Rounds interleave the baseline and gRPC so that both see the same machine load; the medians are
reported. ``--sweep`` adds a table of 256 MiB transfers for several chunk sizes (the service restarted
with each download chunk size), which is how the default chunk size was chosen.

Usage: ``python -m tools.bench storage [--size-mib 1024] [--rounds 3] [--chunk-kib 256] [--sweep]``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ORG = "BenchOrgMSP"
SECRET = "a-benchmark-secret-of-the-required-32-characters-or-more"
REPO = Path(__file__).resolve().parents[2]
MIB = 1 << 20
SWEEP_CHUNKS = (64 << 10, 256 << 10, 1 << 20, 2 << 20, 4 << 20)


def _peak_kb(pid: int | str = "self") -> int:
    """Peak resident set size (VmHWM) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _rss_kb(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# ------------------------------------------------------------------------------------------- child roles
def raw_sink(out: str, fsync: bool) -> int:
    """Accept one connection, write what arrives to ``out``, (fsync,) acknowledge with one byte."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        print(server.getsockname()[1], flush=True)
        connection, _ = server.accept()
        buffer = bytearray(MIB)
        view = memoryview(buffer)
        with connection, open(out, "wb") as handle:
            while n := connection.recv_into(buffer):
                handle.write(view[:n])
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
            connection.sendall(b"k")
    return 0


def raw_send(port: int, path: str) -> int:
    """Send ``path`` to the sink; print the seconds until the sink acknowledged."""
    with socket.create_connection(("127.0.0.1", port)) as connection, open(path, "rb") as handle:
        started = time.perf_counter()
        while block := handle.read(MIB):
            connection.sendall(block)
        connection.shutdown(socket.SHUT_WR)
        assert connection.recv(1) == b"k"
        print(json.dumps({"seconds": time.perf_counter() - started, "peak_kb": _peak_kb()}), flush=True)
    return 0


def grpc_client(addr: str, path: str, out: str, chunk_bytes: int) -> int:
    """Upload ``path``, download it to ``out``; print the seconds of each and this process's peak RSS."""
    from tessera.storage.v1 import storage_pb2 as res
    from tessera.storage.v1 import storage_service_pb2 as api

    from services.kit.client import sync_channel
    from services.kit.identity import OrgCredentials
    from services.kit.storage.client import FastCalls, upload_requests

    calls = FastCalls(sync_channel(addr, OrgCredentials(ORG, SECRET)))
    calls.Upload(upload_requests(api.UploadMetadata(kind=res.FILE_KIND_LOGS), [b"warm-up"]))  # connect first
    size = os.path.getsize(path)
    metadata = api.UploadMetadata(kind=res.FILE_KIND_MODEL, expected_size=size)
    started = time.perf_counter()
    with open(path, "rb") as handle:
        info = calls.Upload(upload_requests(metadata, handle, chunk_bytes, raw=True)).file
    upload_seconds = time.perf_counter() - started
    started = time.perf_counter()
    received = 0
    with open(out, "wb") as handle:
        for response in calls.Download(api.DownloadRequest(file_id=info.file_id)):
            if isinstance(response, memoryview):
                handle.write(response)
                received += len(response)
    download_seconds = time.perf_counter() - started
    assert received == size == info.size
    print(json.dumps({"upload": upload_seconds, "download": download_seconds, "peak_kb": _peak_kb()}), flush=True)
    return 0


def _identity(data: bytes) -> bytes:
    return data


def transport_server(chunk_bytes: int) -> int:
    """gRPC alone: an aio server whose Upload discards the chunks and whose Download sends N bytes from
    memory (no disk, no hashing, no database, no interceptors): the ceiling of the transport here."""
    import asyncio

    import grpc

    async def serve() -> None:
        server = grpc.aio.server()

        async def upload(requests, context):
            received = 0
            async for chunk in requests:
                received += len(chunk)
            return str(received).encode()

        async def download(request, context):
            block = os.urandom(chunk_bytes)
            for _ in range(int(request) // chunk_bytes):
                yield block

        handlers = {
            "Upload": grpc.stream_unary_rpc_method_handler(
                upload, request_deserializer=_identity, response_serializer=_identity
            ),
            "Download": grpc.unary_stream_rpc_method_handler(
                download, request_deserializer=_identity, response_serializer=_identity
            ),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Transport", handlers),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(port, flush=True)
        await server.wait_for_termination()

    asyncio.run(serve())
    return 0


def transport_client(port: int, size: int, chunk_bytes: int) -> int:
    """Upload ``size`` bytes from memory, then download as many; print the seconds of each."""
    import grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    upload = channel.stream_unary("/bench.Transport/Upload", _identity, _identity)
    download = channel.unary_stream("/bench.Transport/Download", _identity, _identity)
    upload(iter([b"warm-up"]))
    block = os.urandom(chunk_bytes)
    started = time.perf_counter()
    upload(block for _ in range(size // chunk_bytes))
    upload_seconds = time.perf_counter() - started
    started = time.perf_counter()
    received = sum(len(chunk) for chunk in download(str(size).encode()))
    download_seconds = time.perf_counter() - started
    assert received == size
    print(json.dumps({"upload": upload_seconds, "download": download_seconds}), flush=True)
    return 0


# ------------------------------------------------------------------------------------------ orchestration
def _child(*args: str) -> list[str]:
    return [sys.executable, "-m", "tools.bench.bench_storage", *args]


def _raw_round(source: Path, folder: Path, fsync: bool) -> dict:
    out = folder / "raw.out"
    sink = subprocess.Popen(
        _child("--raw-sink", str(out), *(["--fsync"] if fsync else [])), cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        port = sink.stdout.readline().strip()
        sender = subprocess.run(_child("--raw-send", port, str(source)), cwd=REPO, capture_output=True, text=True)
        if sender.returncode:
            raise RuntimeError(sender.stderr)
        sink.wait(60)
        return json.loads(sender.stdout)
    finally:
        sink.kill() if sink.poll() is None else None
        sink.stdout.close()
        out.unlink(missing_ok=True)


def _grpc_round(addr: str, source: Path, folder: Path, chunk_bytes: int) -> dict:
    out = folder / "grpc.out"
    try:
        result = subprocess.run(
            _child("--grpc-client", addr, str(source), str(out), str(chunk_bytes)),
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        if result.returncode:
            raise RuntimeError(result.stderr)
        return json.loads(result.stdout)
    finally:
        out.unlink(missing_ok=True)


def _transport_round(size: int, chunk_bytes: int) -> dict:
    server = subprocess.Popen(
        _child("--transport-server", str(chunk_bytes)), cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        port = server.stdout.readline().strip()
        client = subprocess.run(
            _child("--transport-client", port, str(size), str(chunk_bytes)), cwd=REPO, capture_output=True, text=True
        )
        if client.returncode:
            raise RuntimeError(client.stderr)
        return json.loads(client.stdout)
    finally:
        server.kill()
        server.wait()
        server.stdout.close()


class _Service:
    """The storage service as a separate process."""

    def __init__(self, folder: Path, database_url: str, chunk_bytes: int, max_bytes: int) -> None:
        from tools.devnet.credentials import write_org_credentials
        from tools.devnet.embedded import free_port

        credentials = write_org_credentials(folder / "credentials", {ORG: SECRET})
        self.port = free_port()
        self.env = {
            **os.environ,
            "TESSERA_GRPC_ADDR": f"127.0.0.1:{self.port}",
            "TESSERA_DATABASE_URL": database_url,
            **credentials.env(ORG),
            "TESSERA_ORG_ID": ORG,
            "TESSERA_STORAGE_ROOT": str(folder / "storage"),
            "TESSERA_STORAGE_CHUNK_BYTES": str(chunk_bytes),
            "TESSERA_MAX_FILE_BYTES": str(max_bytes),
            "TESSERA_LOG_LEVEL": "WARNING",
        }
        self.process: subprocess.Popen | None = None
        self.started_kb = 0

    def __enter__(self) -> _Service:
        from tools.devnet.embedded import wait_for_port

        self.process = subprocess.Popen([sys.executable, "-m", "services.storage"], cwd=REPO, env=self.env)
        wait_for_port("127.0.0.1", self.port, 60, self.process)
        time.sleep(0.5)  # let start-up settle before reading its resident size
        self.started_kb = _rss_kb(self.process.pid)
        return self

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def peak_kb(self) -> int:
        return _peak_kb(self.process.pid)

    def __exit__(self, *exc) -> None:
        from tools.devnet.embedded import stop_process

        stop_process(self.process)


def _make_source(path: Path, size: int) -> None:
    with open(path, "wb") as handle:
        remaining = size
        while remaining:
            block = os.urandom(min(MIB, remaining))
            handle.write(block)
            remaining -= len(block)


def run(size_mib: int, rounds: int, sweep: bool, chunk_bytes: int = 256 << 10) -> dict:
    """Start PostgreSQL and the service, run the rounds (and the sweep), return the figures."""
    from services.kit.db import ensure_database
    from tools.devnet.embedded import EmbeddedPostgres, free_port

    with tempfile.TemporaryDirectory(prefix="tessera-bench-storage-") as tmp:
        folder = Path(tmp)
        postgres = EmbeddedPostgres(folder / "pg", free_port())
        postgres.start()
        try:
            url = postgres.url("bench_storage")
            ensure_database(url)
            source = folder / "source.bin"
            _make_source(source, size_mib * MIB)
            results: dict = {"size": size_mib * MIB, "chunk": chunk_bytes, "rounds": []}
            with _Service(folder, url, chunk_bytes, max(size_mib * MIB, 1 << 30)) as service:
                results["service_started_kb"] = service.started_kb
                for _ in range(rounds):
                    results["rounds"].append(
                        {
                            "raw_fsync": _raw_round(source, folder, fsync=True),
                            "raw": _raw_round(source, folder, fsync=False),
                            "grpc": _grpc_round(service.addr, source, folder, chunk_bytes),
                            "transport": _transport_round(size_mib * MIB, chunk_bytes),
                        }
                    )
                results["service_peak_kb"] = service.peak_kb()
            if sweep:
                small = folder / "small.bin"
                _make_source(small, 256 * MIB)
                results["sweep"] = []
                for chunk in SWEEP_CHUNKS:
                    with _Service(folder, url, chunk, 1 << 30) as service:
                        raw = _raw_round(small, folder, fsync=False)
                        measured = _grpc_round(service.addr, small, folder, chunk)
                        results["sweep"].append(
                            {"chunk": chunk, "raw": raw, "grpc": measured, "service_peak_kb": service.peak_kb()}
                        )
            return results
        finally:
            postgres.stop()


def report(results: dict) -> str:
    """The figures as markdown tables."""
    size = results["size"]
    rounds = results["rounds"]

    def rate(seconds: list[float]) -> float:
        return size / statistics.median(seconds) / 1e6

    raw_fsync = rate([r["raw_fsync"]["seconds"] for r in rounds])
    raw = rate([r["raw"]["seconds"] for r in rounds])
    up = rate([r["grpc"]["upload"] for r in rounds])
    down = rate([r["grpc"]["download"] for r in rounds])
    bare_up = rate([r["transport"]["upload"] for r in rounds])
    bare_down = rate([r["transport"]["download"] for r in rounds])
    client_mb = max(r["grpc"]["peak_kb"] for r in rounds) / 1024
    raw_mb = max(max(r["raw"]["peak_kb"], r["raw_fsync"]["peak_kb"]) for r in rounds) / 1024
    service_mb = results["service_peak_kb"] / 1024
    lines = [
        f"{size // MIB} MiB in {results['chunk'] >> 10} KiB chunks, median of {len(rounds)} interleaved rounds:",
        "",
        "| path | MB/s | vs raw socket copy | peak RSS, sender side (MB) | peak RSS, receiver side (MB) |",
        "|---|---|---|---|---|",
        f"| raw loopback socket copy, file → socket → file + fsync | {raw_fsync:.0f} | 1.00 | {raw_mb:.0f} | - |",
        f"| gRPC Upload (sha256, write, fsync, commit) | {up:.0f} | {up / raw_fsync:.2f} | client {client_mb:.0f} | "
        f"service {service_mb:.0f} |",
        f"| raw loopback socket copy, file → socket → file | {raw:.0f} | 1.00 | {raw_mb:.0f} | - |",
        f"| gRPC Download (into a file) | {down:.0f} | {down / raw:.2f} | service {service_mb:.0f} | "
        f"client {client_mb:.0f} |",
        "",
        "gRPC alone, memory to memory (no disk, no hash, no service code), same chunks, same rounds:",
        "",
        "| path | MB/s | vs raw socket copy (with fsync / without) |",
        "|---|---|---|",
        f"| client stream (as Upload) | {bare_up:.0f} | {bare_up / raw_fsync:.2f} / {bare_up / raw:.2f} |",
        f"| server stream (as Download) | {bare_down:.0f} | {bare_down / raw_fsync:.2f} / {bare_down / raw:.2f} |",
        "",
        f"Service resident size after start-up, before any transfer: {results['service_started_kb'] / 1024:.0f} MB; "
        f"peak over the whole run: {service_mb:.0f} MB. Client peak: {client_mb:.0f} MB.",
    ]
    if results.get("sweep"):
        small = 256 * MIB
        lines += [
            "",
            "Chunk size sweep (256 MiB, one round each, service restarted per download chunk size):",
            "",
            "| chunk | upload MB/s | download MB/s | raw MB/s | service peak (MB) | client peak (MB) |",
            "|---|---|---|---|---|---|",
        ]
        for row in results["sweep"]:
            lines.append(
                f"| {row['chunk'] >> 10} KiB | {small / row['grpc']['upload'] / 1e6:.0f} | "
                f"{small / row['grpc']['download'] / 1e6:.0f} | {small / row['raw']['seconds'] / 1e6:.0f} | "
                f"{row['service_peak_kb'] / 1024:.0f} | {row['grpc']['peak_kb'] / 1024:.0f} |"
            )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Entry point of ``python -m tools.bench storage`` (and of its child processes)."""
    parser = argparse.ArgumentParser(prog="python -m tools.bench storage")
    parser.add_argument("--size-mib", type=int, default=1024, help="file size (default 1024 MiB)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--chunk-kib", type=int, default=256, help="chunk size both ways (default 256 KiB)")
    parser.add_argument("--sweep", action="store_true", help="also compare chunk sizes on 256 MiB")
    parser.add_argument("--raw-sink", nargs=1, help=argparse.SUPPRESS)
    parser.add_argument("--fsync", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--raw-send", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--grpc-client", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--transport-server", nargs=1, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--transport-client", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.raw_sink:
        return raw_sink(args.raw_sink[0], args.fsync)
    if args.raw_send:
        return raw_send(int(args.raw_send[0]), args.raw_send[1])
    if args.transport_server:
        return transport_server(args.transport_server[0])
    if args.transport_client:
        return transport_client(*args.transport_client)
    if args.grpc_client:
        addr, path, out, chunk = args.grpc_client
        return grpc_client(addr, path, out, int(chunk))
    print(report(run(args.size_mib, args.rounds, args.sweep, args.chunk_kib << 10)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
