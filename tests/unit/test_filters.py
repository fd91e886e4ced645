"""The metadata filter's shape, shared by the gateway's edge and the ledger's queries."""

import pytest

from services.kit.errors import InvalidArgument
from services.kit.filters import metadata_filter, parse_metadata_filter


def test_the_sdk_filter_is_accepted():
    raw = '[{"key": "round", "type": "is", "value": "3"}, {"key": "tag", "type": "exists"}]'
    assert parse_metadata_filter(raw) == [
        {"key": "round", "type": "is", "value": "3"},
        {"key": "tag", "type": "exists"},
    ]
    assert metadata_filter([{"key": "n", "type": "contains", "value": 2}]) == [
        {"key": "n", "type": "contains", "value": 2}
    ]


@pytest.mark.parametrize(
    "raw",
    [
        "notjson",
        "{}",
        '{"key": "a", "type": "is", "value": "b"}',
        '[{"key": "a", "type": "equals", "value": "b"}]',
        '[{"key": 1, "type": "is", "value": "b"}]',
        '[{"key": "a", "type": "is"}]',
        '[{"key": "a", "type": "is", "value": {"nested": 1}}]',
        '["a"]',
        "[" * 5000 + "]" * 5000,
    ],
)
def test_anything_else_is_refused_on_metadata(raw):
    with pytest.raises(InvalidArgument) as refused:
        parse_metadata_filter(raw)
    assert [v.field for v in refused.value.violations] == ["metadata"]
