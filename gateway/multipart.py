"""Streaming ``multipart/form-data`` parsing: parts as they arrive, never a whole file in memory.

``python-multipart``'s push parser is fed the request body chunk by chunk; its callbacks become a
sequence of events (a part begins with its headers, data, a part ends) that the caller consumes
asynchronously, so a file part can be forwarded to storage while the client is still sending it.
Per-part ``Content-Type`` headers are optional (the SDK sends none, contract §5.1).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import ClientDisconnect, Request

from gateway.errors import HttpError
from gateway.inputs import no_nul


@dataclass(frozen=True)
class PartStart:
    """A part begins: its form field name and, for a file, its file name."""

    name: str
    filename: str | None


@dataclass(frozen=True)
class PartData:
    """The next bytes of the current part."""

    data: bytes


@dataclass(frozen=True)
class PartEnd:
    """The current part is complete."""


def boundary_of(request: Request) -> bytes:
    """The multipart boundary of the request; 415 when it is not ``multipart/form-data``, 400 without boundary."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data":
        raise HttpError(415, f'Unsupported media type "{content_type.decode("latin-1")}": send multipart/form-data')
    if not options.get(b"boundary"):
        raise HttpError(400, "a multipart/form-data body needs a boundary parameter")
    return options[b"boundary"]


async def parts(request: Request) -> AsyncIterator[PartStart | PartData | PartEnd]:
    """The events of the request's multipart body, in order."""
    events: list[PartStart | PartData | PartEnd] = []
    header: dict[str, bytearray] = {"field": bytearray(), "value": bytearray()}
    headers: dict[str, bytes] = {}

    def on_part_begin() -> None:
        headers.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header["value"] += data[start:end]

    def on_header_end() -> None:
        headers[header["field"].decode("latin-1").lower()] = bytes(header["value"])
        header["field"], header["value"] = bytearray(), bytearray()

    def on_headers_finished() -> None:
        disposition, options = parse_options_header(headers.get("content-disposition", b""))
        if disposition != b"form-data" or b"name" not in options:
            raise HttpError(400, "every part needs a Content-Disposition: form-data header with a name")
        name = no_nul(options[b"name"].decode("utf-8", "replace"), "part name")
        filename = options.get(b"filename")
        if filename is not None:
            filename = no_nul(filename.decode("utf-8", "replace"), f"{name}: file name")
        events.append(PartStart(name=name, filename=filename))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if end > start:
            events.append(PartData(bytes(data[start:end])))

    def on_part_end() -> None:
        events.append(PartEnd())

    parser = MultipartParser(
        boundary_of(request),
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            for event in events:
                yield event
            events.clear()
        parser.finalize()
    except MultipartParseError as exc:
        raise HttpError(400, f"malformed multipart body: {exc}") from None
    except ClientDisconnect:
        raise HttpError(400, "the client disconnected during the upload") from None
    for event in events:
        yield event
