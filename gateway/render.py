"""Protobuf messages → the JSON the Substra SDK reads (contract §6).

The output is ProtoJSON as ``json_format`` writes it with proto field names, every field without
presence printed, int64 unquoted — but produced by a plan compiled once per message type from its
descriptor (``json_format`` walks descriptors on every call and is ~10x slower, which matters on
pages of 100 tasks that each embed their function). Then two rules the protos cannot express:

* every field *with* presence that is unset (a message, an ``optional`` scalar, a oneof member) is
  printed as ``null``, as DRF serializers do (``start_date``, ``error_type``, a disabled model's
  ``address``...);
* a map is printed in the order its keys were declared, as its sibling ``<map>_order`` field lists
  them (then any key it does not list, sorted), and that field is not printed; a map without one is
  printed sorted. A protobuf map has no order (Python's differs from one process to the next), so
  without this every organization's gateway would print the same asset differently.
  :func:`record_order` is the other direction: it fills ``<map>_order`` from the JSON a client sent;
* per message type, a small reshaper (:data:`RESHAPERS`) applied bottom-up: task inputs flattened to
  ``{identifier, asset_key, parent_task_key, parent_task_output_identifier}``, output and input
  assets' oneof as ``asset``, every ``storage_address`` rewritten to this gateway's absolute URL for
  the file (:func:`services.kit.storage.addresses.storage_address` on the URL of the request, so it
  follows the host the client used).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.internal import type_checkers
from google.protobuf.message import Message
from tessera.storage.v1 import storage_pb2 as files

from services.kit.storage import addresses
from services.kit.storage.addresses import storage_address

_PKG = "tessera.asset.v1."

Convert = Callable[[Any, "Renderer"], Any]


class Renderer:
    """Renders messages for one request (``base_url`` is the gateway URL the client used)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def message(self, message: Message) -> dict[str, Any]:
        """One message as a JSON object."""
        return _plan(message.DESCRIPTOR)(message, self)

    def value(self, message: Message, field: FieldDescriptor) -> Any:
        """The JSON of one field of ``message`` (``response_body``)."""
        return _field_getter(field)(message, self)


# ------------------------------------------------------------------------------------- compiled plans
_PLANS: dict[str, Callable[[Message, Renderer], dict[str, Any]]] = {}


def _plan(descriptor: Descriptor) -> Callable[[Message, Renderer], dict[str, Any]]:
    plan = _PLANS.get(descriptor.full_name)
    if plan is None:
        plan = _compile(descriptor)
        _PLANS[descriptor.full_name] = plan
    return plan


def _compile(descriptor: Descriptor) -> Callable[[Message, Renderer], dict[str, Any]]:
    if descriptor.full_name.startswith("google.protobuf."):
        return _well_known
    # Filled lazily, so that recursive message types compile.
    getters: list[tuple[str, Callable[[Message, Renderer], Any]]] = []
    reshaper = RESHAPERS.get(descriptor.full_name)

    def render(message: Message, renderer: Renderer) -> dict[str, Any]:
        if not getters and descriptor.fields:
            shown = [field for field in descriptor.fields if not is_order_field(field)]
            getters.extend((field.name, _field_getter(field)) for field in shown)
        data = {name: get(message, renderer) for name, get in getters}
        if reshaper is not None:
            reshaper(renderer, data)
        return data

    return render


def _well_known(message: Message, renderer: Renderer) -> Any:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _timestamp(message: Message, renderer: Renderer) -> str:
    return message.ToJsonString()


def _scalar(field: FieldDescriptor) -> Convert:
    kind = field.type
    if field.message_type is not None:
        if field.message_type.full_name == "google.protobuf.Timestamp":
            return _timestamp
        return lambda value, renderer: _plan(field.message_type)(value, renderer)
    if kind == FieldDescriptor.TYPE_ENUM:
        names = {value.number: value.name for value in field.enum_type.values}
        return lambda value, renderer: names.get(value, value)
    if kind == FieldDescriptor.TYPE_FLOAT:
        return lambda value, renderer: _float(value, True)
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return lambda value, renderer: _float(value, False)
    if kind == FieldDescriptor.TYPE_BYTES:
        return lambda value, renderer: base64.b64encode(value).decode()
    return None  # the Python value is already its JSON (str, bool, int)


def _float(value: float, single: bool) -> Any:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return type_checkers.ToShortestFloat(value) if single else value


def _is_map(field: FieldDescriptor | None) -> bool:
    return field is not None and field.message_type is not None and field.message_type.GetOptions().map_entry


def _order_of(field: FieldDescriptor) -> str | None:
    """The name of the field that lists the declared order of map ``field``'s keys, if it has one."""
    order = field.containing_type.fields_by_name.get(f"{field.name}_order")
    if order is None or not order.is_repeated or order.type != FieldDescriptor.TYPE_STRING:
        return None
    return order.name


def is_order_field(field: FieldDescriptor) -> bool:
    """Whether ``field`` lists the key order of a map beside it: the gateway's helper, never shown."""
    if not field.name.endswith("_order"):
        return False
    target = field.containing_type.fields_by_name.get(field.name.removesuffix("_order"))
    return _is_map(target) and _order_of(target) == field.name


def ordered_keys(keys: Any, order: Any = ()) -> list[str]:
    """``keys`` in their declared ``order``, then those it does not list, sorted."""
    present = set(keys)
    listed = [k for k in dict.fromkeys(order) if k in present]
    seen = set(listed)
    return [*listed, *sorted(k for k in present if k not in seen)]


def _field_getter(field: FieldDescriptor) -> Callable[[Message, Renderer], Any]:
    name = field.name
    if _is_map(field):
        convert = _scalar(field.message_type.fields_by_name["value"]) or (lambda value, renderer: value)
        order = _order_of(field)

        def get_map(message: Message, renderer: Renderer) -> dict[str, Any]:
            entries = getattr(message, name)
            keys = ordered_keys(entries, getattr(message, order) if order else ())
            return {k: convert(entries[k], renderer) for k in keys}

        return get_map
    convert = _scalar(field)
    if field.is_repeated:
        if convert is None:
            return lambda message, renderer: list(getattr(message, name))
        return lambda message, renderer: [convert(v, renderer) for v in getattr(message, name)]
    if field.has_presence:
        if convert is None:
            return lambda message, renderer: getattr(message, name) if message.HasField(name) else None
        return lambda message, renderer: convert(getattr(message, name), renderer) if message.HasField(name) else None
    if convert is None:
        return lambda message, renderer: getattr(message, name)
    return lambda message, renderer: convert(getattr(message, name), renderer)


# ------------------------------------------------------------------------------------------ map order in
def record_order(tree: Any, message: Message) -> None:
    """Fill every ``<map>_order`` field of ``message`` (and of the messages inside it) from the key
    order of the JSON object ``tree`` it was parsed from."""
    if not isinstance(tree, dict):
        return
    fields = message.DESCRIPTOR.fields
    for field in fields:
        value = tree.get(field.name, tree.get(field.json_name))
        if value is None or field.message_type is None:
            continue
        if _is_map(field):
            order = _order_of(field)
            if order and isinstance(value, dict):
                target = getattr(message, order)
                del target[:]
                target.extend(k for k in value if isinstance(k, str))
            continue
        if field.message_type.full_name.startswith("google.protobuf."):
            continue
        if field.is_repeated:
            if isinstance(value, list):
                for item, child in zip(value, getattr(message, field.name), strict=False):
                    record_order(item, child)
        elif message.HasField(field.name):
            record_order(value, getattr(message, field.name))


# ------------------------------------------------------------------------------------------- reshapers
def _address(r: Renderer, data: dict, field: str, kind: int, key: str) -> None:
    value = data.get(field)
    if isinstance(value, dict):
        value["storage_address"] = storage_address(r.base_url, kind, key)


def _function(r: Renderer, data: dict) -> None:
    key = data.get("key", "")
    _address(r, data, "archive", files.FILE_KIND_FUNCTION_ARCHIVE, key)
    _address(r, data, "description", files.FILE_KIND_FUNCTION_DESCRIPTION, key)
    data.pop("image", None)  # the built image is the builder's business, not the SDK's


def _data_manager(r: Renderer, data: dict) -> None:
    key = data.get("key", "")
    _address(r, data, "opener", files.FILE_KIND_OPENER, key)
    _address(r, data, "description", files.FILE_KIND_DATA_MANAGER_DESCRIPTION, key)


def _model(r: Renderer, data: dict) -> None:
    _address(r, data, "address", files.FILE_KIND_MODEL, data.get("key", ""))


def _task_input(r: Renderer, data: dict) -> None:
    parent = data.pop("parent_task_output", None) or {}
    data["parent_task_key"] = parent.get("parent_task_key")
    data["parent_task_output_identifier"] = parent.get("output_identifier")


def _task(r: Renderer, data: dict) -> None:
    # A task's logs are its failure report's: its own, or its function's after a failed build.
    logs = data.get("logs_address")
    ref = addresses.parse(logs.get("storage_address", "")) if isinstance(logs, dict) else None
    key = ref.asset_key if ref is not None and ref.kind == files.FILE_KIND_LOGS else data.get("key", "")
    _address(r, data, "logs_address", files.FILE_KIND_LOGS, key)


def _plan_shape(r: Renderer, data: dict) -> None:
    data["failed_task_key"] = data.get("failed_task_key") or None


def _oneof_asset(*fields: str) -> Callable[[Renderer, dict], None]:
    def reshape(r: Renderer, data: dict) -> None:
        asset = None
        for name in fields:
            value = data.pop(name, None)
            if value is not None:
                asset = value
        data["asset"] = asset

    return reshape


def _failure_report(r: Renderer, data: dict) -> None:
    _address(r, data, "logs_address", files.FILE_KIND_LOGS, data.get("asset_key", ""))


def _news(r: Renderer, data: dict) -> None:
    # The frontend's words: plan-level STATUS_* (not PLAN_STATUS_*); a new data manager is STATUS_CREATED.
    status = data.get("status") or ""
    data["status"] = "STATUS_" + status.removeprefix("PLAN_STATUS_").removeprefix("STATUS_")


RESHAPERS: dict[str, Callable[[Renderer, dict], None]] = {
    "tessera.event.v1.NewsFeedItem": _news,
    _PKG + "Function": _function,
    _PKG + "DataManager": _data_manager,
    _PKG + "Model": _model,
    _PKG + "ComputeTaskInput": _task_input,
    _PKG + "ComputeTask": _task,
    _PKG + "ComputePlan": _plan_shape,
    _PKG + "OutputAsset": _oneof_asset("model", "performance"),
    _PKG + "ComputeTaskInputAsset": _oneof_asset("model", "data_manager", "data_sample"),
    _PKG + "FailureReport": _failure_report,
}
