"""The worker outbox's batching rules: a final report replaces an unsent `started`, never a sent one,
and `reports` items carry everything a single frame would."""

from __future__ import annotations

from haco.worker.protocol import Outbox


def test_final_report_replaces_the_unsent_started_report() -> None:
    box = Outbox()
    box.add("started", "j1", 1)
    box.add("completed", "j1", 1, result=5)
    assert [(r.kind, r.job_id) for r in box] == [("completed", "j1")]


def test_a_sent_started_report_stays_until_answered() -> None:
    box = Outbox()
    started = box.add("started", "j1", 1)
    box.mark_sent(started, now=0.0)
    box.add("failed", "j1", 1, error="boom")
    assert [r.kind for r in box] == ["started", "failed"]
    assert box.ack(started.rid) is started


def test_other_attempts_keep_their_started_reports() -> None:
    box = Outbox()
    box.add("started", "j1", 1)
    box.add("started", "j2", 1)
    box.add("completed", "j1", 2)  # another attempt of j1: not the same report stream
    assert sorted((r.kind, r.job_id, r.attempt) for r in box) == [
        ("completed", "j1", 2), ("started", "j1", 1), ("started", "j2", 1)]


def test_report_item_matches_its_single_frame_fields() -> None:
    box = Outbox()
    report = box.add("completed", "j1", 3, result={"x": 1}, stats={"wall_ms": 1.5})
    assert report.item() == {"rid": report.rid, "t": "completed", "job_id": "j1", "attempt": 3,
                             "result": {"x": 1}, "stats": {"wall_ms": 1.5}}
