"""The zero-copy chunk codec of storage agrees byte for byte with protobuf (services.kit.storage.wire)."""

from __future__ import annotations

import os

import pytest
from google.protobuf.message import DecodeError
from tessera.storage.v1 import storage_pb2 as res
from tessera.storage.v1 import storage_service_pb2 as api

from services.kit.storage import wire

SIZES = [0, 1, 127, 128, 16383, 16384, 1 << 20, (1 << 21) + 5]


@pytest.mark.parametrize("size", SIZES)
def test_chunks_encode_like_protobuf_and_decode_without_copy(size):
    data = os.urandom(size)
    assert wire.encode_upload_request(data) == api.UploadRequest(chunk=data).SerializeToString()
    assert wire.encode_download_response(data) == api.DownloadResponse(chunk=data).SerializeToString()
    encoded = wire.encode_chunk(memoryview(data))
    for decode in (wire.decode_upload_request, wire.decode_download_response):
        view = decode(encoded)
        assert isinstance(view, memoryview) and view.obj is encoded and view.tobytes() == data


def test_other_messages_go_through_protobuf():
    metadata = api.UploadRequest(metadata=api.UploadMetadata(kind=res.FILE_KIND_MODEL, asset_key="k"))
    assert wire.encode_upload_request(metadata) == metadata.SerializeToString()
    assert wire.decode_upload_request(metadata.SerializeToString()) == metadata
    info = api.DownloadResponse(info=res.FileInfo(file_id="f", size=3))
    assert wire.encode_download_response(info) == info.SerializeToString()
    assert wire.decode_download_response(info.SerializeToString()) == info


@pytest.mark.parametrize(
    "encoded",
    [
        b"\x12\x03abc\x12\x01d",  # the field twice: protobuf keeps the last
        b"\x12\x03abc\x40\x01",  # an unknown field after the chunk
        b"\x12\x83\x00abc",  # a non-minimal varint length
    ],
)
def test_any_encoding_decodes_to_what_protobuf_parses(encoded):
    decoded = wire.decode_upload_request(encoded)
    chunk = decoded.tobytes() if isinstance(decoded, memoryview) else decoded.chunk
    assert chunk == api.UploadRequest.FromString(encoded).chunk


def test_truncated_messages_are_errors_of_the_protobuf_parser():
    with pytest.raises(DecodeError):
        wire.decode_upload_request(b"\x12\x05abc")
