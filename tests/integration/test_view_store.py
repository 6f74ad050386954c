"""The view's store on SQLite and on a real PostgreSQL (started by the tests): one schema, the same
answers. Idempotent writes, pictures joined to results (also when a picture arrives first), gaps from
the seqs, search by words on both engines' full-text search, filters, retention, migrations."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.core.messages import EventPayload, ModelPayload, ResultPayload, StatsPayload
from edge.view.store import Filters, ViewStore, open_store

BASE = 1_796_000_000.0


def result(seq: int, text: str, *, device: str = "gate", camera: str = "main", task: str = "caption",
           boot: int = 7, data: dict | None = None) -> ResultPayload:  # fmt: skip
    at = f"2026-12-01T10:{seq // 60:02d}:{seq % 60:02d}Z"
    return ResultPayload(
        id=f"{device}-{boot}-{seq}", device=device, camera=camera, task=task, seq=seq, captured_at=at,
        published_at=at, trigger="interval", text=text, data=data,
        model=ModelPayload(name="demo", backend="ort-genai", provider="cpu"),
        stats=StatsPayload(prompt_tokens=9, image_tokens=313, new_tokens=12, ttft_ms=80.0, decode_tok_s=50.0,
                           total_ms=300.0, stop_reason="eos"),
    )  # fmt: skip


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ViewStore]:
    where = (
        str(tmp_path / "view.db") if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    )
    s = open_store(where)
    assert s.dialect == request.param
    yield s
    s.close()


def test_results_are_stored_once_and_joined_to_their_pictures(store: ViewStore) -> None:
    assert store.add_image("gate-7-2", b"\xff\xd8early", 0)  # the picture before its result
    assert store.add_result(result(1, "A red circle on the left."))
    assert store.add_result(result(2, "A blue square in the center."))
    assert not store.add_result(result(2, "A blue square in the center."))  # redelivery
    assert store.add_image("gate-7-1", b"\xff\xd8one", 0)
    assert not store.add_image("gate-7-1", b"\xff\xd8one", 0)
    assert store.count() == 2
    rows = {r.id: r for r in store.results()}
    assert rows["gate-7-1"].images == 1 and rows["gate-7-2"].images == 1
    assert store.image("gate-7-1") == b"\xff\xd8one"
    assert store.image("gate-7-2") == b"\xff\xd8early"
    assert store.image("gate-7-3") is None
    newest, pictured = store.latest("gate", "main")
    assert newest is not None and pictured is not None
    assert newest.id == pictured.id == "gate-7-2"


def test_search_finds_the_words_and_nothing_else(store: ViewStore) -> None:
    texts = ["A red circle on the left.", "A blue square on the right.", "A red square and a blue circle.",
             "Nothing changed.", 'Quotes "red" and an OR NEAR(fts) * trap']  # fmt: skip
    for i, t in enumerate(texts, 1):
        store.add_result(result(i, t))
    store.add_result(
        result(9, "{}", task="shapes", data={"shapes": [{"color": "yellow", "shape": "triangle"}]})
    )
    ids = lambda rows: sorted(r.seq for r in rows)  # noqa: E731
    assert ids(store.search("red")) == [1, 3, 5]
    assert ids(store.search("red square")) == [3]
    assert ids(store.search("yellow")) == [9]  # a structured answer's values
    assert ids(store.search("purple")) == []
    assert ids(store.search("   ")) == []
    assert ids(store.search("NEAR(fts) *")) == [5]  # user text is never query syntax
    assert ids(store.search("red", Filters(task="shapes"))) == []


def test_filters_paging_and_gaps(store: ViewStore) -> None:
    for seq in (1, 2, 3, 6, 7, 10):
        store.add_result(result(seq, f"frame {seq}", camera="main" if seq % 2 else "back"))
    store.add_result(result(1, "other boot", boot=8))
    assert [r.seq for r in store.results(Filters(camera="back"))] == [10, 6, 2]
    page1 = store.results(limit=3)
    page2 = store.results(limit=3, offset=3)
    assert len(page1) == 3 and len(page2) == 3
    assert not {r.id for r in page1} & {r.id for r in page2}
    since = store.results(limit=1, offset=2)[0].at
    assert all(r.at >= since for r in store.results(Filters(since=since)))
    gaps = sorted((g.boot, g.first, g.last, g.count) for g in store.gaps("gate"))
    assert gaps == [(7, 4, 5, 2), (7, 8, 9, 2)]
    assert store.gaps("nobody") == []


def test_events_and_device_state(store: ViewStore) -> None:
    ev = EventPayload(id="gate-7-e1", device="gate", at="2026-12-01T10:00:05Z", event="results_dropped",
                      reason="3 result(s) dropped", detail={"count": 3})  # fmt: skip
    assert store.add_event(ev) and not store.add_event(ev)
    got = store.event("gate-7-e1")
    assert got is not None and got.event == "results_dropped" and got.detail() == {"count": 3}
    store.set_device("gate", status="online")
    store.set_device("gate", status=None)  # keeps what it had
    (dev,) = store.devices()
    assert dev.status == "online"
    store.set_device("gate", status="offline")
    assert store.devices()[0].status == "offline"


def test_retention_removes_old_rows_and_pictures_beyond_the_size(store: ViewStore) -> None:
    for seq in range(1, 6):
        store.add_result(result(seq, f"frame {seq}"), received_at=BASE + seq)
        store.add_image(f"gate-7-{seq}", b"x" * 1000, 0, received_at=BASE + seq)
    assert store.prune(max_image_bytes=2500) == (0, 3)
    assert [r.images for r in sorted(store.results(), key=lambda r: r.seq)] == [0, 0, 0, 1, 1]
    removed, _ = store.prune(keep_days=1.0)  # everything above was received "in 2026-11"
    assert removed == 5 and store.count() == 0
    assert store.search("frame") == []


def test_the_schema_is_versioned_and_reopening_migrates_nothing_twice(
    store: ViewStore, tmp_path: Path
) -> None:
    store.add_result(result(1, "kept across a reopen"))
    assert store.schema_version() >= 1
    where = str(getattr(store, "path", "")) or str(getattr(store, "url", ""))
    again = open_store(where)
    try:
        assert again.schema_version() == store.schema_version()
        assert [r.text for r in again.search("reopen")] == ["kept across a reopen"]
    finally:
        again.close()


def test_gaps_near_a_page_are_the_gaps_that_border_it(store: ViewStore) -> None:
    for seq in (1, 2, 3, 6, 7, 10, 11, 15):
        store.add_result(result(seq, f"frame {seq}"))
    page = store.results(limit=3)  # seqs 15, 11, 10: the gap 12..14 inside, 7 -> 10 below it
    assert [r.seq for r in page] == [15, 11, 10]
    assert sorted((g.first, g.last) for g in store.gaps_near(page)) == [(8, 9), (12, 14)]
    assert sorted((g.first, g.last) for g in store.gaps("gate")) == [(4, 5), (8, 9), (12, 14)]


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_a_store_of_schema_1_is_migrated_on_open(
    engine: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version 2 added the per-camera table; a store written by version 1 gets it, filled."""
    from edge.view import schema as store_mod

    engine = (
        request.node.callspec.params.get("engine", "sqlite")
        if hasattr(request.node, "callspec")
        else "sqlite"
    )
    where = str(tmp_path / "old.db") if engine == "sqlite" else request.getfixturevalue("postgres_url")
    with monkeypatch.context() as m:
        m.setattr(store_mod, "MIGRATIONS", {k: v[:1] for k, v in store_mod.MIGRATIONS.items()})
        old = open_store(where)
        assert old.schema_version() == 1
        for p, (seq, cam) in enumerate(((1, "main"), (2, "back"), (3, "main"))):
            old._execute(old._sql("INSERT INTO results (id, device, boot, seq, camera, task, at, received_at, "
                                  "text, search, images, payload) VALUES ({p},{p},{p},{p},{p},{p},{p},{p},{p},{p},{p},{p})"),
                         (f"gate-7-{seq}", "gate", 7, seq, cam, "caption", BASE + seq, BASE + seq, f"t{seq}", f"t{seq}",
                          int(p == 0), result(seq, f"t{seq}", camera=cam).model_dump_json()))  # fmt: skip
        old.close()
    new = open_store(where)
    try:
        assert new.schema_version() == store_mod.SCHEMA_VERSION == 2
        assert new.cameras() == [("gate", "back"), ("gate", "main")]
        newest, pictured = new.latest("gate", "main")
        assert newest is not None and newest.seq == 3
        assert pictured is not None and pictured.seq == 1
    finally:
        new.close()
