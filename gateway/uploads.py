"""Multipart registrations (contract §5.1): ``POST /data_manager/``, ``/function/``, ``/data_sample/``.

Each file part is streamed to this organization's storage as it arrives (``StorageService.Upload``,
sha256 computed by storage), with backpressure and a size limit; the ``json`` part carries the
spec. Once every part is stored, the asset is registered in the ledger with the files'
checksums and addresses (the ``storage_address`` storage answered, or the same built on this
gateway's public URL when storage has none); if registration fails the stored files are deleted.
Keys of data managers, functions and data samples are made here, before the upload, so files are
stored under their asset's key. ``POST /data_sample/`` also takes a JSON body naming
folders on this server (``local=False``), packed and stored the same way (:mod:`gateway.servermedias`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from starlette.requests import Request
from starlette.responses import JSONResponse
from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import resources_pb2 as res
from tessera.storage.v1 import storage_pb2, storage_service_pb2

from gateway import servermedias
from gateway.errors import HttpError, rpc_error_response
from gateway.inputs import json_object, loads
from gateway.multipart import PartData, PartEnd, PartStart, parts
from gateway.render import Renderer
from gateway.transcoder import parse_into
from gateway.upstreams import Principal, Upstreams
from services.kit.storage.addresses import storage_address

log = logging.getLogger("tessera.gateway.uploads")

CHUNK = 1 << 20  # at most 1 MiB per gRPC message
QUEUE_DEPTH = 8  # chunks buffered per file before the client is slowed down

# The first bytes of the archives a data sample or a function may be (zip, gzip, bzip2, xz, tar).
_ARCHIVE_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")
_TAR_MAGIC_OFFSET = 257
_HEAD = 512


def is_archive(head: bytes) -> bool:
    """Whether ``head`` starts a zip, a (compressed) tar or a plain tar."""
    return head.startswith(_ARCHIVE_MAGIC) or head[_TAR_MAGIC_OFFSET : _TAR_MAGIC_OFFSET + 5] == b"ustar"


@dataclass
class StoredFile:
    """A file part once stored."""

    part: str
    ref: storage_pb2.FileRef
    info: storage_pb2.FileInfo
    head: bytes


class _Upload:
    """One file part on its way to storage."""

    def __init__(self, upstreams: Upstreams, principal: Principal, ref: storage_pb2.FileRef, filename: str, part: str):
        self.ref = ref
        self.part = part
        self.size = 0
        self.head = bytearray()
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_DEPTH)
        metadata = storage_service_pb2.UploadMetadata(kind=ref.kind, asset_key=ref.asset_key, filename=filename)
        self._call = upstreams.storage().Upload(
            self._requests(metadata), metadata=principal.metadata(), timeout=upstreams.call_timeout
        )
        self._task = asyncio.ensure_future(self._call)

    async def _requests(self, metadata) -> AsyncIterator[storage_service_pb2.UploadRequest]:
        yield storage_service_pb2.UploadRequest(metadata=metadata)
        while True:
            chunk = await self._queue.get()
            if chunk is None:
                return
            yield storage_service_pb2.UploadRequest(chunk=chunk)

    async def write(self, data: bytes, limit: int) -> None:
        self.size += len(data)
        if self.size > limit:
            raise HttpError(413, f"{self.part}: File too large (limit {limit} bytes)")
        if len(self.head) < _HEAD:
            self.head += data[: _HEAD - len(self.head)]
        for start in range(0, len(data), CHUNK):
            await self._put(data[start : start + CHUNK])

    async def _put(self, item: bytes | None) -> None:
        # Waiting on the queue and on the call together: a failed call must not leave us blocked.
        put = asyncio.ensure_future(self._queue.put(item))
        done, _ = await asyncio.wait({put, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if put not in done:
            put.cancel()
            await self._task  # raises the call's error
            raise HttpError(502, f"{self.part}: storage ended the upload early")

    async def finish(self) -> StoredFile:
        await self._put(None)
        reply = await self._task
        return StoredFile(self.part, self.ref, reply.file, bytes(self.head))

    def cancel(self) -> None:
        self._call.cancel()


@dataclass
class Received:
    """The outcome of reading a multipart body: its spec and its stored files, in part order."""

    spec: Any = None
    files: list[StoredFile] = field(default_factory=list)


class Uploads:
    """The three multipart registration endpoints."""

    def __init__(
        self,
        upstreams: Upstreams,
        public_url: str,
        max_file_bytes: int,
        max_json_bytes: int,
        servermedias_root: str = "",
    ) -> None:
        self._upstreams = upstreams
        self._public_url = public_url
        self._max_file = max_file_bytes
        self._max_json = max_json_bytes
        self._servermedias_root = servermedias_root

    # ------------------------------------------------------------------------------------ plumbing
    async def _receive(self, request: Request, principal: Principal, ref_of) -> Received:
        """Read the body: the ``json`` field parsed, each file part stored under ``ref_of(part name)``."""
        received = Received()
        current: _Upload | None = None
        field_name: str | None = None
        field_data = bytearray()
        pending: list[_Upload] = []
        try:
            async for event in parts(request):
                if isinstance(event, PartStart):
                    if event.filename is None:
                        field_name, field_data = event.name, bytearray()
                        continue
                    ref = ref_of(event.name)
                    if ref is None:
                        raise HttpError(400, f"unexpected file part {event.name!r}")
                    current = _Upload(self._upstreams, principal, ref, event.filename, event.name)
                    pending.append(current)
                elif isinstance(event, PartData):
                    if current is not None:
                        await current.write(event.data, self._max_file)
                    elif field_name is not None:
                        field_data += event.data
                        if len(field_data) > self._max_json:
                            raise HttpError(413, f"form field {field_name!r} is too large")
                elif isinstance(event, PartEnd):
                    if current is not None:
                        received.files.append(await current.finish())
                        pending.remove(current)
                        current = None
                    elif field_name == "json":
                        received.spec = loads(bytes(field_data), "the 'json' form field")
                    field_name = None
            if pending:
                raise HttpError(400, "the multipart body ended in the middle of a part")
        except BaseException:
            for upload in pending:
                upload.cancel()
            await self._discard(received.files, principal)
            raise
        return received

    async def _discard(self, files: list[StoredFile], principal: Principal) -> None:
        """Delete stored files of a failed registration (best effort)."""
        for stored in files:
            with contextlib.suppress(grpc.RpcError, HttpError):
                await self._upstreams.storage().DeleteFile(
                    storage_service_pb2.DeleteFileRequest(ref=stored.ref),
                    metadata=principal.metadata(),
                    timeout=self._upstreams.call_timeout,
                )

    def _addressable(self, stored: StoredFile) -> res.Addressable:
        """The ledger's address of a stored file: the one storage made, or else the same built on our public URL."""
        address = stored.info.storage_address or storage_address(
            self._public_url, stored.ref.kind, stored.ref.asset_key
        )
        return res.Addressable(checksum=stored.info.checksum, storage_address=address)

    async def _call(self, call, message, principal: Principal):
        return await call(message, metadata=principal.metadata(), timeout=self._upstreams.call_timeout)

    @contextlib.asynccontextmanager
    async def _cleanup_on_error(self, received: Received, principal: Principal):
        """Delete the stored files when what follows their upload fails."""
        try:
            yield
        except BaseException:
            await self._discard(received.files, principal)
            raise

    # ----------------------------------------------------------------------------------- endpoints
    async def data_manager(self, request: Request, principal: Principal, params: dict) -> JSONResponse:
        """``POST /data_manager/``: ``json``, ``data_opener``, ``description``."""
        key = str(uuid.uuid4())
        kinds = {
            "data_opener": storage_pb2.FILE_KIND_OPENER,
            "description": storage_pb2.FILE_KIND_DATA_MANAGER_DESCRIPTION,
        }
        received = await self._receive(request, principal, _refs(kinds, key))
        async with self._cleanup_on_error(received, principal):
            files = _single_files(received, kinds)
            message = api.RegisterDataManagerRequest()
            parse_into(_spec_object(received), message, "json")
            message.key = key
            message.opener.CopyFrom(self._addressable(files["data_opener"]))
            message.description.CopyFrom(self._addressable(files["description"]))
            reply = await self._call(self._upstreams.asset().RegisterDataManager, message, principal)
        return JSONResponse(Renderer(str(request.base_url)).message(reply.data_manager), status_code=201)

    async def function(self, request: Request, principal: Principal, params: dict) -> JSONResponse:
        """``POST /function/``: ``json``, ``file`` (the archive), ``description``."""
        key = str(uuid.uuid4())
        kinds = {
            "file": storage_pb2.FILE_KIND_FUNCTION_ARCHIVE,
            "description": storage_pb2.FILE_KIND_FUNCTION_DESCRIPTION,
        }
        received = await self._receive(request, principal, _refs(kinds, key))
        async with self._cleanup_on_error(received, principal):
            files = _single_files(received, kinds)
            if not is_archive(files["file"].head):
                raise HttpError(400, "file: the function archive must be a tar or zip file")
            spec = _spec_object(received)
            for name in ("inputs", "outputs"):
                if isinstance(spec.get(name), list):  # the SDK's list form, keyed by identifier
                    spec[name] = {_identifier(item): _without(item, "identifier") for item in spec[name]}
            message = api.RegisterFunctionRequest()
            parse_into(spec, message, "json")
            message.key = key
            message.archive.CopyFrom(self._addressable(files["file"]))
            message.description.CopyFrom(self._addressable(files["description"]))
            reply = await self._call(self._upstreams.asset().RegisterFunction, message, principal)
        return JSONResponse(Renderer(str(request.base_url)).message(reply.function), status_code=201)

    async def data_samples(self, request: Request, principal: Principal, params: dict) -> JSONResponse:
        """``POST /data_sample/``: ``json`` ``{"data_manager_keys"}`` and one archive part per sample, or a
        JSON body naming server-side folders (:mod:`gateway.servermedias`)."""
        if not request.headers.get("content-type", "").startswith("multipart/"):
            return await self._server_samples(request, principal)
        keys: dict[str, str] = {}

        def ref_of(part: str) -> storage_pb2.FileRef:
            if part in keys:
                raise HttpError(400, f"file part {part!r} appears twice")
            keys[part] = str(uuid.uuid4())
            return _sample_ref(keys[part])

        received = await self._receive(request, principal, ref_of)
        async with self._cleanup_on_error(received, principal):
            managers = _managers(_spec_object(received))
            if not received.files:
                raise HttpError(400, "at least one data sample archive is required")
            for stored in received.files:
                if not is_archive(stored.head):
                    raise HttpError(400, f"{stored.part}: a data sample must be a zip or tar archive")
        return await self._register_samples(request, principal, received, managers)

    async def _server_samples(self, request: Request, principal: Principal) -> JSONResponse:
        """``add_data_sample(s)(local=False)``: each named folder packed and stored, then registered."""
        spec = await json_object(request)
        managers = _managers(spec)
        folders = servermedias.sample_folders(spec, self._servermedias_root)
        received = Received(spec=spec)
        async with self._cleanup_on_error(received, principal):
            for folder in folders:
                received.files.append(await self._store_folder(folder, principal))
        return await self._register_samples(request, principal, received, managers)

    async def _store_folder(self, folder, principal: Principal) -> StoredFile:
        upload = _Upload(self._upstreams, principal, _sample_ref(str(uuid.uuid4())), f"{folder.name}.tar", folder.name)
        loop = asyncio.get_running_loop()

        def push(data: bytes) -> None:  # on the packing thread: wait until the upload took the bytes
            asyncio.run_coroutine_threadsafe(upload.write(data, self._max_file), loop).result()

        try:
            await asyncio.to_thread(servermedias.pack, folder, push)
            return await upload.finish()
        except BaseException:
            upload.cancel()
            raise

    async def _register_samples(
        self, request: Request, principal: Principal, received: Received, managers: list[str]
    ) -> JSONResponse:
        async with self._cleanup_on_error(received, principal):
            message = api.RegisterDataSamplesRequest(
                data_samples=[
                    api.NewDataSample(
                        key=stored.ref.asset_key,
                        data_manager_keys=managers,
                        # Substra's checksum of a sample is the hash of the unpacked tree (contract §5.1).
                        checksum=stored.info.directory_checksum or stored.info.checksum,
                    )
                    for stored in received.files
                ]
            )
            try:
                reply = await self._call(self._upstreams.asset().RegisterDataSamples, message, principal)
            except grpc.RpcError as exc:
                # add_data_sample(s) reads a 409 body as a list (contract §3).
                await self._discard(received.files, principal)
                received.files.clear()
                return rpc_error_response(exc, list_conflicts=True)
        renderer = Renderer(str(request.base_url))
        return JSONResponse([renderer.message(sample) for sample in reply.data_samples], status_code=201)


def _sample_ref(key: str) -> storage_pb2.FileRef:
    return storage_pb2.FileRef(kind=storage_pb2.FILE_KIND_DATA_SAMPLE, asset_key=key)


def _managers(spec: dict) -> list[str]:
    managers = spec.get("data_manager_keys")
    if not isinstance(managers, list) or not managers or not all(isinstance(k, str) for k in managers):
        raise HttpError(400, "data_manager_keys: a non-empty list of data manager keys is required")
    return managers


def _refs(kinds: dict[str, int], key: str):
    def ref_of(part: str) -> storage_pb2.FileRef | None:
        kind = kinds.get(part)
        return storage_pb2.FileRef(kind=kind, asset_key=key) if kind is not None else None

    return ref_of


def _single_files(received: Received, kinds: dict[str, int]) -> dict[str, StoredFile]:
    files: dict[str, StoredFile] = {}
    for stored in received.files:
        if stored.part in files:
            raise HttpError(400, f"file part {stored.part!r} appears twice")
        files[stored.part] = stored
    missing = [name for name in kinds if name not in files]
    if missing:
        raise HttpError(400, f"missing file part(s): {', '.join(missing)}")
    return files


def _spec_object(received: Received) -> dict:
    if received.spec is None:
        raise HttpError(400, "missing the 'json' form field")
    if not isinstance(received.spec, dict):
        raise HttpError(400, "the 'json' form field must be a JSON object")
    return received.spec


def _identifier(item: Any) -> str:
    if not isinstance(item, dict) or not isinstance(item.get("identifier"), str):
        raise HttpError(400, "inputs and outputs given as a list need an 'identifier' in each item")
    return item["identifier"]


def _without(item: Any, key: str) -> Any:
    return {k: v for k, v in item.items() if k != key} if isinstance(item, dict) else item
