"""The state contract for imported measurements: stored whole in one transaction, read back
in order per device, and one file imported once per device and target."""

from __future__ import annotations

import pytest

from coordinator.state import ImportedLine

LINES = [
    ImportedLine(1, '{"subnet": 1}', 2.5, "{}"),
    ImportedLine(3, '{"subnet": 2}', 4.0, '{"source": "lab"}'),
]


def test_an_import_is_read_back_in_order_per_device(store):
    store.add_import("i1", "phone", '{"name": "t1"}', "a.jsonl", "s1", LINES, 10.0)
    store.add_import("i2", "phone", '{"name": "t2"}', "b.jsonl", "s1", LINES[:1], 11.0)
    store.add_import("i3", "pi", '{"name": "t1"}', "a.jsonl", "s1", LINES, 12.0)
    rows = store.imported("phone")
    assert [(r.import_id, r.target, r.key, r.latency_ms) for r in rows] == [
        ("i1", '{"name": "t1"}', '{"subnet": 1}', 2.5),
        ("i1", '{"name": "t1"}', '{"subnet": 2}', 4.0),
        ("i2", '{"name": "t2"}', '{"subnet": 1}', 2.5),
    ]
    assert store.imported("nobody") == []
    listed = store.list_imports()
    assert [(i["id"], i["label"], i["lines"], i["file"]) for i in listed] == [
        ("i1", "phone", 2, "a.jsonl"),
        ("i2", "phone", 1, "b.jsonl"),
        ("i3", "pi", 2, "a.jsonl"),
    ]


def test_the_same_file_for_the_same_device_and_target_is_refused_whole(store):
    store.add_import("i1", "phone", '{"name": "t1"}', "a.jsonl", "s1", LINES, 10.0)
    with pytest.raises(ValueError, match="already imported for phone on this target as i1"):
        store.add_import("i2", "phone", '{"name": "t1"}', "copy.jsonl", "s1", LINES, 11.0)
    assert [i["id"] for i in store.list_imports()] == ["i1"]
    assert len(store.imported("phone")) == 2
