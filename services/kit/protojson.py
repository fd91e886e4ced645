"""Protobuf JSON (``MessageToDict(preserving_proto_field_name=True)``) parsed back fast.

``json_format.ParseDict`` walks descriptors and validates every value on each call: ~100 µs for a small
message, which made the ledger spend half of a 100-task ``ListTasks`` turning JSONB columns back into
messages. :func:`parse` compiles, once per message type, a table of field setters and fills the message
with them. Message types holding what the table does not cover (well-known types, bytes, floats, maps with
non-string keys) are handed to ``ParseDict`` whole, so the result is always the same as ParseDict's on
what ``MessageToDict`` wrote; anything else unexpected (an unknown field, a wrong type) falls back to
ParseDict too, which then raises its usual error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)
_Fill = Callable[[Message, dict], None]

INTEGER_TYPES = {
    # every integer field type (their JSON form is a number, or a string for the 64-bit ones)
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_SFIXED64,
}
_fills: dict[str, _Fill | None] = {}


class _Unsupported(Exception):
    """The value is not one the compiled table handles: ParseDict decides."""


def _scalar(field: FieldDescriptor) -> Callable[[Any], Any] | None:
    """How one JSON value of a scalar field becomes the Python value protobuf stores; None if unsupported."""
    if field.type == FieldDescriptor.TYPE_STRING:
        return _checked(str)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return _checked(bool)
    if field.type in INTEGER_TYPES:
        return _integer
    if field.type == FieldDescriptor.TYPE_ENUM:
        values = {v.name: v.number for v in field.enum_type.values}
        return lambda value: values[value] if isinstance(value, str) else _integer(value)
    return None


def _checked(kind: type) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if type(value) is not kind:
            raise _Unsupported
        return value

    return convert


def _integer(value: Any) -> int:
    if type(value) is int:
        return value
    if type(value) is str and value.lstrip("-").isdigit():
        return int(value)
    raise _Unsupported


def _compile(descriptor: Descriptor) -> _Fill | None:
    """The filler of ``descriptor``'s messages, or None when a field needs ParseDict."""
    if descriptor.full_name in _fills:
        return _fills[descriptor.full_name]
    _fills[descriptor.full_name] = None  # recursive types are left to ParseDict
    if descriptor.full_name.startswith("google.protobuf."):
        return None
    setters: dict[str, Callable[[Message, Any], None]] = {}
    for field in descriptor.fields:
        setter = _setter(field)
        if setter is None:
            return None
        setters[field.name] = setter

    def fill(message: Message, data: dict) -> None:
        for name, value in data.items():
            if value is None:
                raise _Unsupported
            setters[name](message, value)

    _fills[descriptor.full_name] = fill
    return fill


def _setter(field: FieldDescriptor) -> Callable[[Message, Any], None] | None:
    name = field.name
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key, value = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
        if key.type != FieldDescriptor.TYPE_STRING:
            return None
        if value.message_type is not None:
            fill = _compile(value.message_type)
            if fill is None:
                return None

            def set_message_map(message: Message, data: dict) -> None:
                target = getattr(message, name)
                for k, v in data.items():
                    fill(target[k], v)

            return set_message_map
        convert = _scalar(value)
        if convert is None:
            return None

        def set_map(message: Message, data: dict) -> None:
            target = getattr(message, name)
            for k, v in data.items():
                target[k] = convert(v)

        return set_map
    repeated = field.is_repeated
    if field.message_type is not None:
        fill = _compile(field.message_type)
        if fill is None:
            return None
        if repeated:

            def add_messages(message: Message, values: list) -> None:
                target = getattr(message, name)
                for value in values:
                    fill(target.add(), value)

            return add_messages

        def set_message(message: Message, value: dict) -> None:
            target = getattr(message, name)
            target.SetInParent()  # present even when empty, as ParseDict makes it
            fill(target, value)

        return set_message
    convert = _scalar(field)
    if convert is None:
        return None
    if repeated:
        return lambda message, values: getattr(message, name).extend([convert(v) for v in values])
    return lambda message, value: setattr(message, name, convert(value))


def parse(cls: type[M], data: dict | None) -> M:
    """A ``cls`` message from its protobuf JSON form (``{}`` or None: the empty message)."""
    message = cls()
    if not data:
        return message
    fill = _compile(cls.DESCRIPTOR)
    if fill is not None:
        try:
            fill(message, data)
            return message
        except (_Unsupported, KeyError, TypeError, ValueError, AttributeError):
            message = cls()
    return json_format.ParseDict(data, message)
