"""The OpenAPI 3 document, generated from the same descriptors as the routes.

Transcoded operations get their path variables, their query parameters (every scalar field left
unbound by the path and the body, repeated ones as comma-separated arrays), their request body
and their response (``response_body`` unwrapped, pages in the envelope) from the method's
messages; descriptions are the proto comments when ``gen/python/tessera.binpb`` (written by
``make gen`` with source info) is present. Adapters describe themselves where they are declared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from gateway.render import is_order_field
from gateway.router import Endpoint
from gateway.transcoder import PAGE_FIELDS, QUERY_ALIASES, RpcRoute

DESCRIPTOR_SET = Path(__file__).resolve().parents[1] / "gen" / "python" / "tessera.binpb"

_SCALARS = {
    FieldDescriptor.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldDescriptor.TYPE_INT64: {"type": "integer", "format": "int64"},
    FieldDescriptor.TYPE_UINT64: {"type": "integer", "format": "int64"},
    FieldDescriptor.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_UINT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SINT64: {"type": "integer", "format": "int64"},
    FieldDescriptor.TYPE_FIXED32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_FIXED64: {"type": "integer", "format": "int64"},
    FieldDescriptor.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SFIXED64: {"type": "integer", "format": "int64"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "format": "byte"},
}
_WELL_KNOWN = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
}
ERROR = {
    "description": "Error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def load_comments(path: Path = DESCRIPTOR_SET) -> dict[str, str]:
    """Leading comments of messages, fields and methods by full name (empty without the file)."""
    if not path.exists():
        return {}
    files = descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes()).file
    comments: dict[str, str] = {}
    for file in files:
        names: dict[tuple[int, ...], str] = {}
        for i, message in enumerate(file.message_type):
            full = f"{file.package}.{message.name}"
            names[(4, i)] = full
            for j, field in enumerate(message.field):
                names[(4, i, 2, j)] = f"{full}.{field.name}"
        for i, service in enumerate(file.service):
            for j, method in enumerate(service.method):
                names[(6, i, 2, j)] = f"{file.package}.{service.name}.{method.name}"
        for location in file.source_code_info.location:
            name = names.get(tuple(location.path))
            if name and location.leading_comments:
                comments[name] = " ".join(line.strip() for line in location.leading_comments.strip().splitlines())
    return comments


class _Schemas:
    def __init__(self, comments: dict[str, str]) -> None:
        self.comments = comments
        self.components: dict[str, Any] = {}

    def ref(self, descriptor: Descriptor | EnumDescriptor) -> dict[str, Any]:
        if descriptor.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[descriptor.full_name])
        name = descriptor.full_name
        if name not in self.components:
            self.components[name] = {}  # placeholder against recursion
            self.components[name] = (
                self._enum(descriptor) if isinstance(descriptor, EnumDescriptor) else (self._message(descriptor))
            )
        return {"$ref": f"#/components/schemas/{name}"}

    def _enum(self, descriptor: EnumDescriptor) -> dict[str, Any]:
        return {"type": "string", "enum": [value.name for value in descriptor.values]}

    def _message(self, descriptor: Descriptor, skip: set[str] | None = None) -> dict[str, Any]:
        properties = {
            field.name: self.field(field)
            for field in descriptor.fields
            if field.name not in (skip or set()) and not is_order_field(field)
        }
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        if descriptor.full_name in self.comments:
            schema["description"] = self.comments[descriptor.full_name]
        return schema

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value = field.message_type.fields_by_name["value"]
            schema: dict[str, Any] = {"type": "object", "additionalProperties": self.single(value)}
        elif field.is_repeated:
            schema = {"type": "array", "items": self.single(field)}
        else:
            schema = self.single(field)
            if field.has_presence and "$ref" not in schema:
                schema["nullable"] = True
        comment = self.comments.get(f"{field.containing_type.full_name}.{field.name}")
        if comment and "$ref" not in schema:
            schema["description"] = comment
        return schema

    def single(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None:
            return self.ref(field.message_type)
        if field.enum_type is not None:
            return self.ref(field.enum_type)
        return dict(_SCALARS.get(field.type, {"type": "string"}))

    def body(self, descriptor: Descriptor, skip: set[str]) -> dict[str, Any]:
        return self._message(descriptor, skip)


def _query_parameters(route: RpcRoute, schemas: _Schemas) -> list[dict[str, Any]]:
    if route.body == "*":
        return []
    bound = set(route.template.variables) | ({route.body} if route.body else set())
    aliases = QUERY_ALIASES.get(route.method.name, {})
    rest_names = {target: name for name, target in aliases.items()}
    parameters = []
    for field in route.method.input_type.fields:
        if field.name in bound or (field.message_type is not None and field.message_type.full_name not in _WELL_KNOWN):
            continue
        if is_order_field(field) or (field.name in aliases and field.name not in rest_names):
            continue  # internal, or its REST name binds another field
        schema = schemas.field(field)
        name = rest_names.get(field.name, field.name)
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": schema}
        if field.is_repeated:
            parameter.update(style="form", explode=False)
        parameters.append(parameter)
    return parameters


def _response_schema(route: RpcRoute, schemas: _Schemas) -> dict[str, Any]:
    output = route.method.output_type
    if route.response_body:
        return schemas.field(output.fields_by_name[route.response_body])
    if route.page_items:
        items = output.fields_by_name[route.page_items]
        properties: dict[str, Any] = {
            "count": {"type": "integer"},
            "next": {"type": "string", "format": "uri", "nullable": True},
            "previous": {"type": "string", "format": "uri", "nullable": True},
            "results": schemas.field(items),
        }
        for field in output.fields:
            if field.name not in (route.page_items, *PAGE_FIELDS):
                properties[field.name] = schemas.field(field)
        return {"type": "object", "properties": properties}
    return schemas.ref(output)


def _rpc_operation(endpoint: Endpoint, route: RpcRoute, schemas: _Schemas) -> dict[str, Any]:
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in route.template.variables
    ] + _query_parameters(route, schemas)
    operation: dict[str, Any] = {
        "operationId": route.method.name,
        "tags": [route.template.source.strip("/").split("/")[0]],
        "parameters": parameters,
        "responses": {
            str(route.status): {
                "description": "OK",
                "content": {"application/json": {"schema": _response_schema(route, schemas)}},
            },
            "default": ERROR,
        },
        "x-grpc-method": route.full_name,
    }
    comment = schemas.comments.get(route.full_name)
    if comment:
        operation["summary"] = comment
    if route.body:
        skip = set(route.template.variables)
        if route.body == "*":
            body_schema = schemas.body(route.method.input_type, skip)
        else:
            body_schema = schemas.field(route.method.input_type.fields_by_name[route.body])
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body_schema}}}
    return operation


def document(endpoints: list[Endpoint], version: str, comments: dict[str, str] | None = None) -> dict[str, Any]:
    """The OpenAPI 3.0 document of ``endpoints``."""
    schemas = _Schemas(load_comments() if comments is None else comments)
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in sorted(endpoints, key=lambda e: (e.template.openapi_path(), e.verb)):
        if endpoint.rpc is not None:
            operation = _rpc_operation(endpoint, endpoint.rpc, schemas)
        else:
            operation = {"operationId": endpoint.name, **endpoint.openapi}
            operation.setdefault("tags", [endpoint.template.source.strip("/").split("/")[0]])
            operation.setdefault("responses", {"200": {"description": "OK"}, "default": ERROR})
            variables = endpoint.template.variables
            if variables:
                path_parameters = [
                    {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in variables
                ]
                operation["parameters"] = path_parameters + operation.get("parameters", [])
        if not endpoint.public:
            operation["security"] = [{"token": []}, {"jwt": []}]
        paths.setdefault(endpoint.template.openapi_path(), {})[endpoint.verb.lower()] = operation
    schemas.components["Error"] = {
        "type": "object",
        "properties": {
            "detail": {"type": "string"},
            "key": {"nullable": True},
            "reason": {"type": "string"},
            "errors": {"type": "array", "items": {"type": "object"}},
        },
        "required": ["detail"],
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "Tessera gateway (Substra REST API)", "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas.components,
            "securitySchemes": {
                "token": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "`Token <key>`, from POST /api-token-auth/",
                },
                "jwt": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "`JWT <header.payload>` with the `signature` cookie, from POST /me/login/",
                },
            },
        },
    }
