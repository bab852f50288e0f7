"""The review API's security and answers: reviewers authenticate with their own key, the key (never the
request) names who decides, unknown keys lease nothing, reads follow the server's key policy, 409/422."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from modalens.matching.offers import Offer
from modalens.matching.review import ReviewQueue
from modalens.serving import ServeSettings, create_review_app


def items(n: int, image: str | None = None):
    out = []
    for i in range(n):
        a = Offer(f"new/{i}?x", images=[image] if image else [], title=f"Blue shirt {i}", price=100 + i)
        b = Offer(f"cat {i}#y", images=[image] if image else [], title=f"Navy shirt {i}", price=99 + i)
        out.append((a, b, 0.8, 0.5, "doubtful"))
    return out


@pytest.fixture()
def db(tmp_path, mini_products):
    path = tmp_path / "reviews.sqlite"
    with ReviewQueue(path) as q:
        q.add_pairs(items(5, mini_products[0].image))
    return path


@pytest.fixture()
def keys(db) -> dict[str, str]:
    with ReviewQueue(db) as q:
        return {name: q.add_reviewer(name) for name in ("ann", "bob")}


def serve(db, **settings) -> TestClient:
    return TestClient(create_review_app(db, settings=ServeSettings(**settings)))


def as_(key: str) -> dict:
    return {"X-API-Key": key}


def test_every_review_call_that_acts_needs_a_reviewer_key(db, keys):
    with serve(db) as c:
        for method, path, body in [
            ("GET", "/review/api/next", None),
            ("GET", "/review/api/me", None),
            ("POST", "/review/api/decide", {"pair_id": "x", "decision": "match"}),
            ("POST", "/review/api/undo", None),
            ("POST", "/review/api/release", None),
        ]:
            assert c.request(method, path, json=body).status_code == 401, path
            assert c.request(method, path, json=body, headers=as_("mlr_not-a-key")).status_code == 401, path
        assert c.get("/review/api/stats").json()["leased"] == 0  # nothing was leased by anyone
        assert c.get("/review/api/me", headers=as_(keys["ann"])).json() == {"reviewer": "ann"}


def test_without_reviewer_keys_decisions_are_refused_with_a_hint(db):
    with serve(db) as c:
        response = c.get("/review/api/next")
        assert response.status_code == 403 and "--add-reviewer" in response.json()["detail"]


def test_the_key_names_the_reviewer_and_the_request_cannot(db, keys):
    with serve(db) as c:
        pair = c.get("/review/api/next", headers=as_(keys["ann"])).json()["pair"]
        assert pair["leased_by"] == "ann"
        # ann's key acting as bob: refused, in the query and in the body
        assert c.get("/review/api/next?reviewer=bob", headers=as_(keys["ann"])).status_code == 403
        impersonate = {"pair_id": pair["id"], "reviewer": "bob", "decision": "match"}
        assert c.post("/review/api/decide", json=impersonate, headers=as_(keys["ann"])).status_code == 403
        assert c.post("/review/api/undo", json={"reviewer": "bob"}, headers=as_(keys["ann"])).status_code == 403
        # naming herself is allowed (older clients), naming no one is the way
        decided = c.post("/review/api/decide", json={"pair_id": pair["id"], "decision": "match"}, headers=as_(keys["ann"]))
        assert decided.status_code == 200 and decided.json()["reviewer"] == "ann"
        nxt = c.get("/review/api/next?reviewer=ann", headers=as_(keys["ann"])).json()["pair"]
        c.post("/review/api/decide", json={"pair_id": nxt["id"], "reviewer": "ann", "decision": "no-match"}, headers=as_(keys["ann"]))
    with ReviewQueue(db) as q:
        assert [(d["pair_id"], d["reviewer"], d["decision"]) for d in q.decisions()] == [
            (pair["id"], "ann", "match"), (nxt["id"], "ann", "no-match")
        ]  # fmt: skip


def test_lease_flooding_is_bounded(db, keys):
    """Invented names or keys lease nothing; a real reviewer holds one pair however often they ask."""
    with serve(db) as c:
        for i in range(30):
            assert c.get(f"/review/api/next?reviewer=flood{i}", headers=as_(f"mlr_fake{i}")).status_code == 401
        assert c.get("/review/api/stats").json()["leased"] == 0
        held = {c.get("/review/api/next", headers=as_(keys["ann"])).json()["pair"]["id"] for _ in range(10)}
        assert len(held) == 1 and c.get("/review/api/stats").json()["leased"] == 1
        bob = c.get("/review/api/next", headers=as_(keys["bob"])).json()["pair"]["id"]
        assert bob not in held and c.get("/review/api/stats").json()["leased"] == 2


def test_conflicts_answer_409_and_bad_requests_422(db, keys):
    with serve(db, review_lease_seconds=300.0) as c:
        ann = c.get("/review/api/next", headers=as_(keys["ann"])).json()["pair"]["id"]
        bob = c.get("/review/api/next", headers=as_(keys["bob"])).json()["pair"]["id"]
        # 422: no such decision, no pair id, a pair id too long
        assert c.post("/review/api/decide", json={"pair_id": ann, "decision": "maybe"}, headers=as_(keys["ann"])).status_code == 422
        assert c.post("/review/api/decide", json={"decision": "match"}, headers=as_(keys["ann"])).status_code == 422
        assert c.post("/review/api/decide", json={"pair_id": "x" * 2000, "decision": "match"}, headers=as_(keys["ann"])).status_code == 422
        assert c.post("/review/api/decide", content=b"{not json", headers={**as_(keys["ann"]), "content-type": "application/json"}).status_code == 422
        # 409: bob's pair is not ann's to decide; a pair decided already; a pair no one holds
        taken = c.post("/review/api/decide", json={"pair_id": bob, "decision": "match"}, headers=as_(keys["ann"]))
        assert taken.status_code == 409 and "not leased to ann" in taken.json()["detail"]
        assert c.post("/review/api/decide", json={"pair_id": ann, "decision": "match"}, headers=as_(keys["ann"])).status_code == 200
        again = c.post("/review/api/decide", json={"pair_id": ann, "decision": "no-match"}, headers=as_(keys["ann"]))
        assert again.status_code == 409
        assert c.post("/review/api/decide", json={"pair_id": "no||such", "decision": "match"}, headers=as_(keys["ann"])).status_code == 409
        # undo of a skip whose pair another reviewer holds now: 409, and nothing changes
        skipped = c.get("/review/api/next", headers=as_(keys["ann"])).json()["pair"]["id"]
        assert c.post("/review/api/decide", json={"pair_id": skipped, "decision": "skip"}, headers=as_(keys["ann"])).status_code == 200
        held = bob
        while held != skipped:  # skipped pairs come last: bob answers the others until he holds it
            c.post("/review/api/decide", json={"pair_id": held, "decision": "no-match"}, headers=as_(keys["bob"]))
            held = c.get("/review/api/next", headers=as_(keys["bob"])).json()["pair"]["id"]
        assert c.post("/review/api/undo", headers=as_(keys["ann"])).status_code == 409
    with ReviewQueue(db) as q:
        assert q.get(skipped).leased_by == "bob"


def test_review_reads_need_a_key_when_reads_do(db, keys):
    with serve(db, read_requires_key=True) as c:
        assert c.get("/review/").status_code == 200  # the page itself holds no data
        assert c.get("/review/static/review.js").status_code == 200
        assert c.get("/review/api/stats").status_code == 401
        assert c.get("/review/api/stats", headers=as_(keys["bob"])).status_code == 200
        pair = c.get("/review/api/next", headers=as_(keys["ann"])).json()["pair"]
        photo = pair["left"]["images"][0]
        assert c.get(photo).status_code == 401
        assert c.get(photo, headers=as_(keys["ann"])).headers["content-type"].startswith("image/")
    with serve(db) as c:  # reads open (the default): stats and photos without a key
        assert c.get("/review/api/stats").status_code == 200
        assert c.get(photo).status_code == 200


def test_photos_of_offers_with_url_characters_in_their_ids(db, keys):
    with serve(db) as c:
        pair = c.get("/review/api/next", headers=as_(keys["ann"])).json()["pair"]
        assert "/" in pair["id"] and "?" in pair["id"] and "#" in pair["id"]
        for side in ("left", "right"):
            response = c.get(pair[side]["images"][0])
            assert response.status_code == 200 and response.headers["content-type"].startswith("image/")


def test_keys_are_stored_hashed_and_can_be_revoked(db, keys):
    raw = Path(db).read_bytes() + (Path(f"{db}-wal").read_bytes() if Path(f"{db}-wal").exists() else b"")
    assert keys["ann"].encode() not in raw
    with sqlite3.connect(db) as conn:
        stored = dict(conn.execute("SELECT name, key_hash FROM review_reviewers").fetchall())
    assert set(stored) == {"ann", "bob"} and all(len(h) == 64 and h not in keys.values() for h in stored.values())
    with ReviewQueue(db) as q:
        assert q.reviewer_for_key(keys["ann"]) == "ann" and q.reviewer_for_key(keys["bob"]) == "bob"
        assert q.reviewer_for_key("") is None and q.reviewer_for_key(keys["ann"] + "x") is None
        assert q.remove_reviewer("ann") and not q.remove_reviewer("nobody")
    with serve(db) as c:
        assert c.get("/review/api/next", headers=as_(keys["ann"])).status_code == 401


def test_match_review_creates_lists_and_revokes_keys(db):
    from modalens.cli.match_cmd import app

    runner = CliRunner()
    made = runner.invoke(app, ["review", str(db), "--add-reviewer", "cid", "--add-reviewer", "dee"])
    assert made.exit_code == 0, made.output
    lines = dict(line.split("\t") for line in made.stdout.splitlines() if "\t" in line)
    assert set(lines) == {"cid", "dee"} and all(k.startswith("mlr_") for k in lines.values())
    with serve(db) as c:
        assert c.get("/review/api/me", headers=as_(lines["cid"])).json()["reviewer"] == "cid"
    listed = runner.invoke(app, ["review", str(db), "--list-reviewers"])
    assert listed.stdout.split() == ["cid", "dee"]
    assert runner.invoke(app, ["review", str(db), "--remove-reviewer", "cid"]).exit_code == 0
    assert runner.invoke(app, ["review", str(db), "--remove-reviewer", "cid"]).exit_code == 2
    with serve(db) as c:
        assert c.get("/review/api/me", headers=as_(lines["cid"])).status_code == 401


def test_audit_estimate_over_the_api_follows_the_read_policy(db, keys):
    with ReviewQueue(db) as q:  # one audited automatic acceptance, answered wrongly-decided by ann
        a, b = Offer("audit-a", title="Blue shirt"), Offer("audit-b", title="Red dress")
        q.add_pairs([(a, b, 0.95, 0.99, "score 0.950 (p=0.99)")], source="audit:accept|test", priority=0.0)
        pair = q.lease("ann")
        assert pair.left.id == "audit-a"  # priority 0: first in line, among the doubtful ones
        q.decide(pair.id, "ann", "no-match")
    with serve(db, read_requires_key=True) as c:
        assert c.get("/review/api/audit").status_code == 401
        est = c.get("/review/api/audit", headers=as_(keys["bob"])).json()
    assert est["precision"]["audited"] == 1 and est["precision"]["confirmed"] == 0 and est["npv"]["audited"] == 0
    # one wrong merge in one audit already alarms: at precision 99% that happens with probability 1% < 5%
    assert est["precision"]["upper_bound"] == pytest.approx(0.95) and est["precision"]["status"] == "alarm" and est["alarm"] is True
