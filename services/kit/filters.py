"""The shape of the SDK's metadata filter, one rule for the gateway's edge and the ledger's queries.

``?metadata=`` is a JSON list of ``{"key", "type": "is" | "contains" | "exists", "value"}`` (no value for
``exists``); anything else is refused, never ignored.
"""

from __future__ import annotations

import json
from typing import Any

from services.kit.errors import InvalidArgument

METADATA_TYPES = ("is", "contains", "exists")
METADATA_SHAPE = 'must be a JSON list of {"key", "type": "is|contains|exists", "value"}'


def metadata_filter(conditions: Any) -> list[dict[str, Any]]:
    """``conditions`` (parsed JSON) when it has the filter's shape; InvalidArgument on ``metadata`` otherwise."""
    if not isinstance(conditions, list) or not all(_is_condition(c) for c in conditions):
        raise InvalidArgument.on("metadata", METADATA_SHAPE)
    return conditions


def parse_metadata_filter(raw: str) -> list[dict[str, Any]]:
    """:func:`metadata_filter` of the JSON text ``raw``."""
    try:
        conditions = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested too deep
        raise InvalidArgument.on("metadata", METADATA_SHAPE) from None
    return metadata_filter(conditions)


def _is_condition(condition: Any) -> bool:
    return (
        isinstance(condition, dict)
        and isinstance(condition.get("key"), str)
        and condition.get("type") in METADATA_TYPES
        and (condition["type"] == "exists" or isinstance(condition.get("value"), str | int | float))
    )
