"""QueryLog across a reload: lines of queries in flight are never lost to a closed file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resolver.querylog import QueryLog


def record(log: QueryLog, name: bytes) -> None:
    log.record(("127.0.0.1", 5300), "udp", name, 1, 0, 0.001, "upstream")


def names(path: Path) -> list[str]:
    return [json.loads(line)["name"] for line in path.read_text().splitlines()]


def test_lines_recorded_after_a_hand_over_go_to_the_successor(tmp_path: Path) -> None:
    old_path, new_path = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    old = QueryLog(old_path)
    record(old, b"\x06before\x00")
    new = QueryLog(new_path)
    old.hand_over(new)
    record(old, b"\x08inflight\x00")  # a query that began before the reload
    record(new, b"\x05after\x00")
    new.close()
    assert names(old_path) == ["before."]
    assert names(new_path) == ["inflight.", "after."]


@pytest.mark.parametrize("end", ["close", "hand-over-to-none"])
def test_a_closed_log_without_successor_still_appends_each_line(tmp_path: Path, end: str) -> None:
    path = tmp_path / "queries.jsonl"
    log = QueryLog(path)
    record(log, b"\x06before\x00")
    if end == "close":
        log.close()
        log.close()  # idempotent
    else:
        log.hand_over(None)
    record(log, b"\x08inflight\x00")
    assert names(path) == ["before.", "inflight."]
    assert log.records == 2
