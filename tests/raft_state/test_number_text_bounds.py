"""parse_job refuses numbers beyond the float range and strings UTF-8 cannot encode, naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from raft_state import SpecError, parse_job

HUGE = 10**4299  # 4,300 digits: the most json.loads accepts, far past the float range


@pytest.mark.parametrize("field, value", [
    ("timeout_s", HUGE), ("backoff_s", HUGE), ("timeout_s", -HUGE), ("backoff_s", float("inf")),
    ("timeout_s", float("nan")), ("requirements.min_memory_gb", HUGE),
    ("requirements.min_cuda_compute", -HUGE),
])
def test_numbers_beyond_the_float_range_are_refused_naming_the_field(field: str, value: Any) -> None:
    job: dict[str, Any] = {"type": "noop"}
    if field.startswith("requirements."):
        job["requirements"] = {field.split(".", 1)[1]: value}
    else:
        job[field] = value
    with pytest.raises(SpecError) as info:
        parse_job(job)
    assert info.value.field == field


def test_huge_numbers_from_json_text_are_refused() -> None:
    body = json.loads('{"type": "noop", "timeout_s": 1' + "0" * 4299 + "}")
    with pytest.raises(SpecError, match="timeout_s"):
        parse_job(body)


def test_integers_within_range_are_still_seconds() -> None:
    spec, _ = parse_job({"type": "noop", "timeout_s": 60, "backoff_s": 0})
    assert (spec.timeout_ms, spec.backoff_ms) == (60_000, 0)


LONE = "\ud800"


@pytest.mark.parametrize("job, field", [
    ({"payload": LONE}, "payload"), ({"payload": {"k": [1, "a" + LONE]}}, "payload"),
    ({"payload": {LONE: 1}}, "payload"), ({"labels": {"team": LONE}}, "labels.team"),
    ({"labels": {LONE: "x"}}, "labels"), ({"key": "k" + LONE}, "key"),
    ({"required_tags": ["gpu", LONE]}, "required_tags[1]"), ({"depends_on": [LONE]}, "depends_on[0]"),
    ({"requirements": {"hardware": [LONE]}}, "requirements.hardware[0]"),
])
def test_strings_utf8_cannot_encode_are_refused_naming_the_field(job: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_job({"type": "noop", **job})
    assert info.value.field == field
    assert "UTF-8" in info.value.message


def test_cesu8_bytes_decoded_by_json_loads_are_refused() -> None:
    body = json.loads(b'{"type": "noop", "payload": "\xed\xa0\x80"}')  # json.loads(bytes) lets them through
    with pytest.raises(SpecError, match="payload"):
        parse_job(body)


def test_valid_non_ascii_text_is_kept() -> None:
    spec, key = parse_job({"type": "noop", "payload": {"größe": "🦆"}, "key": "ключ", "labels": {"t": "é"}})
    assert key == "ключ"
