"""The review queue: doubtful pairs waiting for a person, and every decision people made.

Stored through a thin DB-API layer whose SQL runs unchanged on SQLite (the
embedded default: a file path or ``sqlite:///path``) and PostgreSQL (a
``postgresql://`` URL, through psycopg), so a team can share one queue.

Guarantees:

* each decision (and each undo) is one transaction: a server stopped mid-review
  loses nothing that was answered;
* a pair is *leased* to one reviewer at a time with an expiry, taken by a
  conditional UPDATE that only one of two racing reviewers can win; an
  abandoned lease expires and the pair goes back to the queue;
* decisions are never deleted: undo marks the reviewer's last decision undone
  and hands that pair back to the same reviewer;
* every decision keeps its reviewer and time;
* reviewers are known by name and authenticate with a key (``add_reviewer``):
  only a salted SHA-256 of each key is stored, and the web API takes the
  reviewer's name from the key, never from the request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import ConflictError, InvalidInputError
from .offers import Offer

DECISIONS = ("match", "no-match", "skip")
DEFAULT_LEASE_SECONDS = 300.0

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS review_offers (id TEXT PRIMARY KEY, data TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS review_pairs (
        id TEXT PRIMARY KEY,
        left_id TEXT NOT NULL,
        right_id TEXT NOT NULL,
        score DOUBLE PRECISION NOT NULL,
        probability DOUBLE PRECISION,
        reason TEXT NOT NULL,
        status TEXT NOT NULL,
        label TEXT,
        priority DOUBLE PRECISION NOT NULL,
        skips INTEGER NOT NULL,
        leased_by TEXT,
        lease_until DOUBLE PRECISION,
        created TEXT NOT NULL,
        source TEXT)""",
    "CREATE INDEX IF NOT EXISTS review_pairs_queue ON review_pairs (status, skips, priority)",
    """CREATE TABLE IF NOT EXISTS review_decisions (
        id TEXT PRIMARY KEY,
        seq BIGINT NOT NULL,
        pair_id TEXT NOT NULL,
        reviewer TEXT NOT NULL,
        decision TEXT NOT NULL,
        decided_at TEXT NOT NULL,
        undone INTEGER NOT NULL,
        undone_at TEXT)""",
    "CREATE INDEX IF NOT EXISTS review_decisions_reviewer ON review_decisions (reviewer, undone, seq)",
    """CREATE TABLE IF NOT EXISTS review_reviewers (
        name TEXT PRIMARY KEY,
        salt TEXT NOT NULL,
        key_hash TEXT NOT NULL,
        created TEXT NOT NULL)""",
)


class LeaseError(ConflictError, RuntimeError):
    """The pair is not (or no longer) leased to this reviewer, or already decided (HTTP 409)."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Database:
    """One DB-API connection; SQL is written with ``?`` placeholders and adapted to the driver."""

    def __init__(self, url: str | Path) -> None:
        self.url = str(url)
        if self.url.startswith(("postgresql://", "postgres://")):
            import psycopg

            self.dialect = "postgres"
            self.conn = psycopg.connect(self.url, autocommit=True)
        else:
            path = self.url.removeprefix("sqlite:///") if self.url.startswith("sqlite:///") else self.url
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.dialect = "sqlite"
            self.conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
        self._depth = 0

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgres" else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        cur = self.conn.cursor()
        cur.execute(self._sql(sql), tuple(params))
        return cur

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cur = self.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """All-or-nothing; SQLite takes the write lock up front (BEGIN IMMEDIATE) so racing writers queue."""
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        self.execute("BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN")
        self._depth = 1
        try:
            yield self
        except BaseException:
            self._depth = 0
            self.execute("ROLLBACK")
            raise
        self._depth = 0
        self.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


@dataclass
class ReviewPair:
    id: str
    left: Offer
    right: Offer
    score: float
    probability: float | None
    reason: str
    status: str
    label: str | None
    leased_by: str | None
    lease_until: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "left": self.left.display(),
            "right": self.right.display(),
            "score": self.score,
            "probability": self.probability,
            "reason": self.reason,
            "status": self.status,
            "label": self.label,
            "leased_by": self.leased_by,
            "lease_until": self.lease_until,
        }


class ReviewQueue:
    """Doubtful pairs, leases and decisions in one database (SQLite file or PostgreSQL URL)."""

    def __init__(self, url: str | Path, *, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self.db = Database(url)
        self.lease_seconds = lease_seconds
        with self.db.transaction():
            for statement in _SCHEMA:
                self.db.execute(statement)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> ReviewQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------- reviewers

    def add_reviewer(self, name: str) -> str:
        """Create (or replace) ``name``'s key and return it; only its salted SHA-256 is stored, so it is shown once."""
        name = _reviewer(name)
        key = "mlr_" + secrets.token_urlsafe(24)
        salt = secrets.token_hex(16)
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO review_reviewers (name, salt, key_hash, created) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET salt = excluded.salt, key_hash = excluded.key_hash, created = excluded.created",
                (name, salt, _key_hash(salt, key), _now()),
            )
        return key

    def remove_reviewer(self, name: str) -> bool:
        """Revoke ``name``'s key (their decisions stay); their leased pair goes back to the queue."""
        name = _reviewer(name)
        with self.db.transaction():
            cur = self.db.execute("DELETE FROM review_reviewers WHERE name = ?", (name,))
            self.db.execute("UPDATE review_pairs SET leased_by = NULL, lease_until = NULL WHERE leased_by = ? AND status = 'pending'", (name,))
        return cur.rowcount > 0

    def reviewers(self) -> list[str]:
        return [r["name"] for r in self.db.query("SELECT name FROM review_reviewers ORDER BY name")]

    def reviewer_for_key(self, key: str | None) -> str | None:
        """The reviewer a key belongs to, or None (every stored hash is compared, in constant time each)."""
        if not key or len(key) > 200:
            return None
        found = None
        for row in self.db.query("SELECT name, salt, key_hash FROM review_reviewers"):
            if hmac.compare_digest(_key_hash(row["salt"], key), row["key_hash"]):
                found = row["name"]
        return found

    # ------------------------------------------------------------- filling

    def add_pairs(self, items: Sequence[tuple[Offer, Offer, float, float | None, str]], *, source: str = "",
                  priority: float | None = None) -> int:
        """Queue (left, right, score, probability, reason) pairs; a pair already queued is kept as it is. Returns how many were new.

        Pairs come out most doubtful first (|probability - 0.5|); ``priority`` overrides that for these items
        (audit items get a spread of priorities so that they are mixed in among the doubtful ones)."""
        added = 0
        with self.db.transaction():
            for left, right, score, probability, reason in items:
                for offer in (left, right):
                    data = json.dumps(offer.to_dict(), ensure_ascii=False)
                    self.db.execute(
                        "INSERT INTO review_offers (id, data) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET data = excluded.data",
                        (offer.id, data),
                    )
                pid = pair_id(left.id, right.id)
                rank = priority if priority is not None else abs(probability - 0.5) if probability is not None else 0.0  # most doubtful first
                cur = self.db.execute(
                    "INSERT INTO review_pairs (id, left_id, right_id, score, probability, reason, status, label, priority, skips,"
                    " leased_by, lease_until, created, source) VALUES (?, ?, ?, ?, ?, ?, 'pending', NULL, ?, 0, NULL, NULL, ?, ?)"
                    " ON CONFLICT (id) DO NOTHING",
                    (pid, left.id, right.id, float(score), None if probability is None else float(probability), reason, float(rank), _now(), source),
                )
                added += max(cur.rowcount, 0)
        return added

    # ------------------------------------------------------------- leasing

    def lease(self, reviewer: str, *, now: float | None = None) -> ReviewPair | None:
        """The next pair for ``reviewer``, leased to them; the pair they already hold if they hold one; None when the queue is empty."""
        reviewer = _reviewer(reviewer)
        for _ in range(20):
            t = time.time() if now is None else now
            with self.db.transaction():
                held = self.db.query(
                    "SELECT id FROM review_pairs WHERE status = 'pending' AND leased_by = ? AND lease_until >= ? ORDER BY lease_until DESC LIMIT 1",
                    (reviewer, t),
                )
                if held:
                    self.db.execute("UPDATE review_pairs SET lease_until = ? WHERE id = ?", (t + self.lease_seconds, held[0]["id"]))
                    return self.get(held[0]["id"])
                free = self.db.query(
                    "SELECT id FROM review_pairs WHERE status = 'pending' AND (leased_by IS NULL OR lease_until < ?)"
                    " ORDER BY skips, priority, id LIMIT 1",
                    (t,),
                )
                if not free:
                    return None
                cur = self.db.execute(
                    "UPDATE review_pairs SET leased_by = ?, lease_until = ? WHERE id = ? AND status = 'pending'"
                    " AND (leased_by IS NULL OR lease_until < ?)",
                    (reviewer, t + self.lease_seconds, free[0]["id"], t),
                )
                if cur.rowcount == 1:
                    return self.get(free[0]["id"])
            # another reviewer took it between our SELECT and UPDATE: try the next one
        raise RuntimeError("could not lease a pair after 20 tries (heavy contention)")

    def release(self, reviewer: str) -> None:
        with self.db.transaction():
            self.db.execute("UPDATE review_pairs SET leased_by = NULL, lease_until = NULL WHERE leased_by = ? AND status = 'pending'", (_reviewer(reviewer),))

    # ------------------------------------------------------------- decisions

    def decide(self, pair: str, reviewer: str, decision: str, *, now: float | None = None) -> None:
        """Record ``decision`` (match / no-match / skip) for a pair the reviewer holds; one transaction."""
        reviewer = _reviewer(reviewer)
        if decision not in DECISIONS:
            raise InvalidInputError(f"decision must be one of {DECISIONS}, not {decision!r}")
        with self.db.transaction():
            if decision == "skip":
                cur = self.db.execute(
                    "UPDATE review_pairs SET skips = skips + 1, leased_by = NULL, lease_until = NULL"
                    " WHERE id = ? AND status = 'pending' AND leased_by = ?",
                    (pair, reviewer),
                )
            else:
                cur = self.db.execute(
                    "UPDATE review_pairs SET status = 'decided', label = ?, leased_by = NULL, lease_until = NULL"
                    " WHERE id = ? AND status = 'pending' AND leased_by = ?",
                    (decision, pair, reviewer),
                )
            if cur.rowcount != 1:
                raise LeaseError(f"pair {pair} is not leased to {reviewer} (taken by someone else, or already decided)")
            self.db.execute(
                "INSERT INTO review_decisions (id, seq, pair_id, reviewer, decision, decided_at, undone, undone_at) VALUES (?, ?, ?, ?, ?, ?, 0, NULL)",
                (uuid.uuid4().hex, time.time_ns(), pair, reviewer, decision, _now()),
            )

    def undo(self, reviewer: str, *, now: float | None = None) -> ReviewPair | None:
        """Undo the reviewer's last decision that is not undone yet; that pair comes back leased to them. None if nothing to undo."""
        reviewer = _reviewer(reviewer)
        t = time.time() if now is None else now
        with self.db.transaction():
            last = self.db.query(
                "SELECT id, pair_id, decision FROM review_decisions WHERE reviewer = ? AND undone = 0 ORDER BY seq DESC LIMIT 1",
                (reviewer,),
            )
            if not last:
                return None
            d = last[0]
            # the pair the reviewer holds now goes back to the queue
            self.db.execute(
                "UPDATE review_pairs SET leased_by = NULL, lease_until = NULL WHERE leased_by = ? AND status = 'pending' AND id <> ?",
                (reviewer, d["pair_id"]),
            )
            if d["decision"] == "skip":
                cur = self.db.execute(
                    "UPDATE review_pairs SET skips = CASE WHEN skips > 0 THEN skips - 1 ELSE 0 END, leased_by = ?, lease_until = ?"
                    " WHERE id = ? AND status = 'pending' AND (leased_by IS NULL OR lease_until < ? OR leased_by = ?)",
                    (reviewer, t + self.lease_seconds, d["pair_id"], t, reviewer),
                )
            else:
                cur = self.db.execute(
                    "UPDATE review_pairs SET status = 'pending', label = NULL, leased_by = ?, lease_until = ? WHERE id = ? AND status = 'decided'",
                    (reviewer, t + self.lease_seconds, d["pair_id"]),
                )
            if cur.rowcount != 1:
                raise LeaseError(f"pair {d['pair_id']} is held by another reviewer now; its decision cannot be undone")
            self.db.execute("UPDATE review_decisions SET undone = 1, undone_at = ? WHERE id = ?", (_now(), d["id"]))
        return self.get(d["pair_id"])

    # ------------------------------------------------------------- reading

    def get(self, pair: str) -> ReviewPair:
        rows = self.db.query("SELECT * FROM review_pairs WHERE id = ?", (pair,))
        if not rows:
            raise KeyError(f"no pair {pair!r} in the review queue")
        r = rows[0]
        return ReviewPair(
            r["id"], self.offer(r["left_id"]), self.offer(r["right_id"]), float(r["score"]),
            None if r["probability"] is None else float(r["probability"]), r["reason"], r["status"], r["label"],
            r["leased_by"], None if r["lease_until"] is None else float(r["lease_until"]),
        )  # fmt: skip

    def offer(self, offer_id: str) -> Offer:
        rows = self.db.query("SELECT data FROM review_offers WHERE id = ?", (offer_id,))
        if not rows:
            raise KeyError(f"no offer {offer_id!r} in the review queue")
        return Offer.from_dict(json.loads(rows[0]["data"]))

    def decisions(self, *, include_undone: bool = True) -> list[dict[str, Any]]:
        where = "" if include_undone else " WHERE undone = 0"
        return self.db.query(f"SELECT * FROM review_decisions{where} ORDER BY seq")

    def stats(self) -> dict[str, int]:
        t = time.time()
        rows = self.db.query(
            "SELECT status, label, leased, COUNT(*) AS n FROM (SELECT status, label,"
            " CASE WHEN leased_by IS NOT NULL AND lease_until >= ? THEN 1 ELSE 0 END AS leased FROM review_pairs) AS p"
            " GROUP BY status, label, leased",
            (t,),
        )
        out = {"pending": 0, "leased": 0, "match": 0, "no-match": 0}
        for r in rows:
            if r["status"] == "pending":
                out["pending"] += int(r["n"])
                out["leased"] += int(r["n"]) if r["leased"] else 0
            elif r["label"] in out:
                out[r["label"]] += int(r["n"])
        out["decided"] = out["match"] + out["no-match"]
        return out

    def audit_estimate(self, *, target_precision: float = 0.99, target_npv: float = 0.99, confidence: float = 0.95) -> dict:
        """Running precision / NPV of the automatic regions from the audit items people decided.

        Audit items are automatically accepted or rejected pairs queued unmarked (``source`` starts with
        ``audit:accept`` / ``audit:reject``; reviewers never see the source). Each side gets its rate, a
        one-sided Clopper-Pearson interval and a status (``ok`` / ``unproven`` / ``alarm``, see
        :func:`calibration.audit_status`); ``alarm`` is true when either side is in alarm."""
        from .calibration import audit_status

        counts = {"accept": [0, 0], "reject": [0, 0]}
        for kind, _, correct in self.audit_answers():
            counts[kind][1] += 1
            counts[kind][0] += correct
        pending = self.db.query("SELECT COUNT(*) AS n FROM review_pairs WHERE status = 'pending' AND source LIKE 'audit:%'")
        out = {
            "precision": audit_status(*counts["accept"], target_precision, confidence),
            "npv": audit_status(*counts["reject"], target_npv, confidence),
            "audits_pending": int(pending[0]["n"]),
        }
        out["alarm"] = out["precision"]["status"] == "alarm" or out["npv"]["status"] == "alarm"
        return out

    def audit_answers(self, *, with_offers: bool = False) -> list[tuple]:
        """Answered audit items: (``accept`` or ``reject``, score, whether people confirmed the automatic decision),
        plus the pair's two offers with ``with_offers`` (to tell which thresholds decided it)."""
        rows = self.db.query("SELECT id, source, label, score FROM review_pairs WHERE status = 'decided' AND source LIKE 'audit:%' ORDER BY id")
        out = []
        for r in rows:
            kind = str(r["source"]).split(":")[1].split("|")[0]
            if kind in ("accept", "reject") and r["label"] in ("match", "no-match"):
                answer = (kind, float(r["score"]), (r["label"] == "match") == (kind == "accept"))
                if with_offers:
                    pair = self.get(r["id"])
                    answer += (pair.left, pair.right)
                out.append(answer)
        return out

    def labelled_pairs(self) -> list[tuple[Offer, Offer, bool]]:
        """The pairs people decided (their current label): the labels retraining and re-calibration use."""
        rows = self.db.query("SELECT id, label FROM review_pairs WHERE status = 'decided' ORDER BY id")
        out = []
        for r in rows:
            p = self.get(r["id"])
            out.append((p.left, p.right, r["label"] == "match"))
        return out

    def labelled_scores(self) -> list[tuple[str, str, float, bool]]:
        rows = self.db.query("SELECT left_id, right_id, score, label FROM review_pairs WHERE status = 'decided' ORDER BY id")
        return [(r["left_id"], r["right_id"], float(r["score"]), r["label"] == "match") for r in rows]


def pair_id(a: str, b: str) -> str:
    return f"{a}||{b}"


def _key_hash(salt: str, key: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + key.encode()).hexdigest()


def _reviewer(name: str) -> str:
    name = (name or "").strip() if isinstance(name, str) else ""
    if not name or len(name) > 100 or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidInputError("a reviewer name (1-100 characters, no control characters) is required")
    return name
