"""Generic HTTP ↔ gRPC transcoding from the services' ``google.api.http`` annotations.

At start-up :func:`rpc_routes` reads every annotated method of the descriptors (additional
bindings included) and compiles its template once. Per request :class:`Transcoder` binds, in the
order of grpc-gateway: path variables, then the body (``*`` or one field), then the query string
for the fields left unbound; calls the method with the user's channel and name; and renders the
reply — ``response_body`` unwrapped, list pages in Substra's envelope.

Query strings follow what the SDK sends (contract §1.1-1.2): a repeated field takes
comma-separated values and repeated parameters (merged, duplicates dropped, because the SDK
re-sends its params on ``next``); a singular field takes the first occurrence. Unknown
parameters are ignored, as django-filter does; malformed values are a 400.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.api import annotations_pb2, http_pb2
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor, MethodDescriptor
from google.protobuf.message import Message
from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway import policies
from gateway.errors import HttpError, rpc_error_response
from gateway.httprule import Template, compile_template
from gateway.inputs import read_json
from gateway.render import Renderer, record_order
from gateway.upstreams import Principal, Upstreams
from services.kit.protojson import INTEGER_TYPES
from services.kit.server import MAX_MESSAGE_BYTES

PAGE_FIELDS = ("next_page_token", "total_size")
# Query parameters whose REST name binds another field than the proto's same-named one, per RPC:
# Substra's ``kind=A,B`` on a task's input assets is the request's repeated ``kinds``.
QUERY_ALIASES: dict[str, dict[str, str]] = {"GetTaskInputAssets": {"kind": "kinds"}}

_FLOATS = {FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


@dataclass(frozen=True)
class RpcRoute:
    """One HTTP binding of one RPC."""

    verb: str
    template: Template
    body: str
    response_body: str
    method: MethodDescriptor
    upstream: str
    status: int
    page_items: str  # the repeated field rendered as "results" when the reply is a page; "" otherwise
    request_class: type[Message] = field(repr=False)
    response_class: type[Message] = field(repr=False)

    @property
    def rpc(self) -> str:
        """``/tessera.asset.v1.AssetService/GetTask``."""
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def full_name(self) -> str:
        """``tessera.asset.v1.AssetService.GetTask``."""
        return self.method.full_name


def upstream_of(service_full_name: str) -> str:
    """``tessera.asset.v1.AssetService`` → ``asset``: services are named after their proto package."""
    return service_full_name.split(".")[1]


def _bindings(rule: http_pb2.HttpRule) -> Iterable[http_pb2.HttpRule]:
    yield rule
    yield from rule.additional_bindings


def _page_items(response: Descriptor, response_body: str) -> str:
    names = set(response.fields_by_name)
    if response_body or not set(PAGE_FIELDS) <= names:
        return ""
    first = response.fields_by_number.get(1)
    if first is None or not first.is_repeated:
        return ""
    return first.name


def rpc_routes(files: Iterable[FileDescriptor]) -> list[RpcRoute]:
    """Every annotated binding of the services of ``files``."""
    routes = []
    for file in files:
        for service in file.services_by_name.values():
            for method in service.methods:
                options = method.GetOptions()
                if not options.HasExtension(annotations_pb2.http):
                    continue
                for rule in _bindings(options.Extensions[annotations_pb2.http]):
                    pattern = rule.WhichOneof("pattern")
                    if pattern == "custom":
                        verb, path = rule.custom.kind.lower(), rule.custom.path
                    else:
                        verb, path = pattern, getattr(rule, pattern)
                    template = compile_template(path)
                    # A POST on a collection creates a resource: 201, as DRF answers (contract §4).
                    creates = verb == "post" and template.segments == 1 and not template.variables
                    routes.append(
                        RpcRoute(
                            verb=verb.upper(),
                            template=template,
                            body=rule.body,
                            response_body=rule.response_body,
                            method=method,
                            upstream=upstream_of(service.full_name),
                            status=201 if creates else 200,
                            page_items=_page_items(method.output_type, rule.response_body),
                            request_class=message_factory.GetMessageClass(method.input_type),
                            response_class=message_factory.GetMessageClass(method.output_type),
                        )
                    )
    return routes


# --------------------------------------------------------------------------------------------- binding
def _resolve(descriptor: Descriptor, path: str) -> FieldDescriptor | None:
    field_descriptor = None
    for part in path.split("."):
        if descriptor is None:
            return None
        field_descriptor = descriptor.fields_by_name.get(part)
        if field_descriptor is None:
            return None
        descriptor = field_descriptor.message_type
    return field_descriptor


def _timestamp(name: str, raw: str) -> str:
    """A query date or date-time as ProtoJSON's timestamp: a plain date is the start of that day, or its
    end for an upper bound (``creation_date_before=2024-10-31`` includes the 31st); no zone means UTC."""
    raw = raw.strip()
    try:
        if _DATE.fullmatch(raw):
            bound = dt.time.max if name.endswith("_before") else dt.time()
            return dt.datetime.combine(dt.date.fromisoformat(raw), bound).isoformat() + "Z"
        # An unencoded "+02:00" arrives as " 02:00" (a "+" in a query string is a space).
        moment = dt.datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "+", 1) if "T" in raw else raw)
    except ValueError:
        raise HttpError(400, f"{name}: {raw!r} is not a date (YYYY-MM-DD) or an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).replace(tzinfo=None).isoformat() + "Z"


def _scalar(field_descriptor: FieldDescriptor, name: str, raw: str) -> Any:
    kind = field_descriptor.type
    if kind == FieldDescriptor.TYPE_MESSAGE and field_descriptor.message_type.full_name == "google.protobuf.Timestamp":
        return _timestamp(name, raw)
    try:
        if kind in INTEGER_TYPES:
            return int(raw)
        if kind in _FLOATS:
            return float(raw)
    except ValueError:
        raise HttpError(400, f"{name}: {raw!r} is not a number") from None
    if kind == FieldDescriptor.TYPE_BOOL:
        lowered = raw.strip().lower()
        if lowered in _TRUE | _FALSE:
            return lowered in _TRUE
        raise HttpError(400, f"{name}: {raw!r} is not a boolean")
    if kind == FieldDescriptor.TYPE_ENUM:
        if raw.lstrip("-").isdigit():
            return int(raw)
        value = field_descriptor.enum_type.values_by_name.get(raw)
        if value is None:
            raise HttpError(400, f"{name}: {raw!r} is not one of the available choices")
        return value.number
    return raw  # strings, enum names, well-known types in their JSON string form (timestamps)


def _assign(tree: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        tree = tree.setdefault(part, {})
    tree[parts[-1]] = value


def query_tree(descriptor: Descriptor, items: Iterable[tuple[str, str]], bound: set[str]) -> dict[str, Any]:
    """The JSON form of the query parameters that name an unbound field of ``descriptor``."""
    tree: dict[str, Any] = {}
    seen: dict[str, Any] = {}
    for name, raw in items:
        if name.split(".")[0] in bound:
            continue
        target = _resolve(descriptor, name)
        if target is None:
            continue  # unknown filters are ignored, like django-filter
        if target.message_type is not None and not target.message_type.full_name.startswith("google.protobuf."):
            continue  # a message can only be bound through its subfields
        if target.is_repeated:
            values = seen.setdefault(name, [])
            for part in raw.split(","):
                part = part.strip()
                if part:
                    value = _scalar(target, name, part)
                    if value not in values:
                        values.append(value)
            _assign(tree, name, values)
        elif name not in seen:
            seen[name] = _scalar(target, name, raw)
            _assign(tree, name, seen[name])
    return tree


def assign(tree: dict[str, Any], message: Message, what: str) -> None:
    """Set the converted values of ``tree``: scalars directly, messages through ``json_format``."""
    rest = {}
    fields = message.DESCRIPTOR.fields_by_name
    for name, value in tree.items():
        field_descriptor = fields[name]
        if field_descriptor.message_type is not None:
            rest[name] = value
            continue
        try:
            if field_descriptor.is_repeated:
                target = getattr(message, name)
                del target[:]
                target.extend(value)
            else:
                setattr(message, name, value)
        except (TypeError, ValueError) as exc:
            raise HttpError(400, f"invalid {what}: {name}: {exc}") from None
    if rest:
        parse_into(rest, message, what)


def parse_into(tree: Any, message: Message, what: str) -> None:
    """``json_format.ParseDict`` with unknown fields ignored; malformed input is a 400."""
    try:
        json_format.ParseDict(tree, message, ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, ValueError, AttributeError) as exc:
        raise HttpError(400, f"invalid {what}: {exc}") from None
    record_order(tree, message)  # the declared order of its maps, which a protobuf map does not keep


def bind(
    route: RpcRoute, path_params: dict[str, str], body: Any, query: Iterable[tuple[str, str]], request_class=None
) -> Message:
    """The request message: path variables, then the body, then the query for unbound fields."""
    message = (request_class or route.request_class)()
    descriptor = message.DESCRIPTOR
    bound = {name.split(".")[0] for name in path_params}
    if route.body == "*":
        if not isinstance(body, dict):
            raise HttpError(400, "the request body must be a JSON object")
        parse_into(body, message, "request body")
        bound |= set(descriptor.fields_by_name)
    elif route.body:
        parse_into({route.body: body}, message, "request body")
        bound.add(route.body.split(".")[0])
    path_tree: dict[str, Any] = {}
    for name, raw in path_params.items():
        target = _resolve(descriptor, name)
        if target is None:
            raise HttpError(500, f"template variable {name} names no field")
        _assign(path_tree, name, _scalar(target, name, raw))
    if route.body != "*":
        assign(query_tree(descriptor, query, bound), message, "query parameters")
    assign(path_tree, message, "path")
    return message


# ------------------------------------------------------------------------------------------- rendering
def page_links(request: Request, page: int, has_next: bool) -> tuple[str | None, str | None]:
    """Absolute ``next`` and ``previous`` URLs of a numbered page, as DRF builds them."""
    url = request.url
    following = str(url.include_query_params(page=page + 1)) if has_next else None
    if page <= 1:
        return following, None
    previous = url.remove_query_params("page") if page == 2 else url.include_query_params(page=page - 1)
    return following, str(previous)


def render_reply(route: RpcRoute, request: Request, message: Message, reply: Message) -> Any:
    """The JSON of a reply: ``response_body`` unwrapped, pages in the envelope."""
    renderer = Renderer(str(request.base_url))
    if route.response_body:
        return renderer.value(reply, reply.DESCRIPTOR.fields_by_name[route.response_body])
    if not route.page_items:
        return renderer.message(reply)
    page = getattr(message, "page", 0) or 1
    following, previous = page_links(request, page, bool(reply.next_page_token))
    data: dict[str, Any] = {
        "count": reply.total_size,
        "next": following,
        "previous": previous,
        "results": [renderer.message(item) for item in getattr(reply, route.page_items)],
    }
    for other in reply.DESCRIPTOR.fields:
        if other.name not in (route.page_items, *PAGE_FIELDS):
            data[other.name] = renderer.value(reply, other)
    return data


# ----------------------------------------------------------------------------------------------- calls
class Transcoder:
    """Calls the RPC behind a route and answers in JSON."""

    def __init__(self, upstreams: Upstreams, max_json_bytes: int) -> None:
        self.upstreams = upstreams
        self._max_json = max_json_bytes
        self._calls: dict[str, Callable] = {}

    def callable(self, route: RpcRoute) -> Callable:
        """The unary multicallable of ``route``'s method, made once."""
        call = self._calls.get(route.rpc)
        if call is None:
            call = self.upstreams.channel(route.upstream).unary_unary(
                route.rpc,
                request_serializer=route.request_class.SerializeToString,
                response_deserializer=route.response_class.FromString,
            )
            self._calls[route.rpc] = call
        return call

    async def invoke(self, route: RpcRoute, message: Message, principal: Principal) -> Message:
        """Call the route's method for ``principal``."""
        return await self.callable(route)(message, metadata=principal.metadata(), timeout=self.upstreams.call_timeout)

    async def handle(self, route: RpcRoute, request: Request, principal: Principal, params: dict[str, str]):
        """Bind, call, render."""
        body = await read_json(request, self._max_json) if route.body else None
        message = bind(route, params, body, request.query_params.multi_items())
        size = message.ByteSize()
        if size > MAX_MESSAGE_BYTES:
            raise HttpError(
                413, f"the request is {size} bytes once encoded; one call takes at most {MAX_MESSAGE_BYTES} bytes"
            )
        policies.before_call(route.full_name, message, principal)
        try:
            reply = await self.invoke(route, message, principal)
        except grpc.RpcError as exc:
            recovered = await policies.on_error(self, route, message, principal, exc)
            if recovered is None:
                return rpc_error_response(exc)
            reply, status = recovered
            return JSONResponse(render_reply(route, request, message, reply), status_code=status)
        return JSONResponse(render_reply(route, request, message, reply), status_code=route.status)
