"""The review queue: exclusive leases, undo, decisions that survive a restart; SQLite and (if it can run) PostgreSQL."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from modalens.matching.offers import Offer
from modalens.matching.review import LeaseError, ReviewQueue


def items(n: int = 3):
    out = []
    for i in range(n):
        a = Offer(f"new-{i}", images=[f"/nowhere/{i}.jpg"], title=f"Blue shirt {i}", price=100 + i)
        b = Offer(f"cat-{i}", images=[f"/nowhere/c{i}.jpg"], title=f"Navy shirt {i}", price=99 + i)
        out.append((a, b, 0.8 + i / 100, 0.5 + i / 10, "doubtful"))
    return out


def check_leases_are_exclusive(url: str) -> None:
    with ReviewQueue(url, lease_seconds=60) as q:
        assert q.add_pairs(items(2)) == 2
        assert q.add_pairs(items(2)) == 0  # already queued
        t = time.time()
        ann = q.lease("ann", now=t)
        bob = q.lease("bob", now=t)
        assert ann and bob and ann.id != bob.id
        assert q.lease("ann", now=t).id == ann.id  # a reviewer keeps the pair they hold
        assert q.lease("cid", now=t) is None  # both pairs are out
        with pytest.raises(LeaseError):
            q.decide(ann.id, "bob", "match")  # not bob's pair
        # ann walks away: after the lease expires someone else gets her pair; her late answer is refused
        later = t + 61
        cid = q.lease("cid", now=later)
        assert cid.id == ann.id
        with pytest.raises(LeaseError):
            q.decide(ann.id, "ann", "match")
        q.decide(cid.id, "cid", "no-match")
        assert q.stats()["no-match"] == 1


def test_sqlite_leases_are_exclusive(tmp_path):
    check_leases_are_exclusive(str(tmp_path / "q.sqlite"))


def test_two_reviewers_racing_never_get_the_same_pair(tmp_path):
    db = tmp_path / "q.sqlite"
    with ReviewQueue(db) as q:
        q.add_pairs(items(40))
    got: dict[str, list[str]] = {"ann": [], "bob": []}

    def work(name: str) -> None:
        with ReviewQueue(db) as q:  # each reviewer its own connection, as two server workers would have
            while (pair := q.lease(name)) is not None:
                got[name].append(pair.id)
                q.decide(pair.id, name, "match")

    threads = [threading.Thread(target=work, args=(n,)) for n in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(got["ann"]) + len(got["bob"]) == 40
    assert not set(got["ann"]) & set(got["bob"])
    with ReviewQueue(db) as q:
        assert len(q.decisions()) == 40


def test_undo_and_decisions_survive_a_restart(tmp_path):
    db = tmp_path / "q.sqlite"
    q = ReviewQueue(db)
    q.add_pairs(items(3))
    first = q.lease("ann")
    q.decide(first.id, "ann", "match")
    second = q.lease("ann")
    q.decide(second.id, "ann", "no-match")
    third = q.lease("ann")  # holding a third pair when she presses undo
    back = q.undo("ann")
    assert back.id == second.id and back.status == "pending" and back.leased_by == "ann"
    assert q.get(third.id).leased_by is None  # the pair she held goes back to the queue
    q.decide(back.id, "ann", "match")  # she changes her mind
    q.close()  # the server stops

    q = ReviewQueue(db)
    rows = q.decisions()
    assert [(r["decision"], r["undone"]) for r in rows] == [("match", 0), ("no-match", 1), ("match", 0)]
    assert all(r["reviewer"] == "ann" and r["decided_at"] for r in rows)
    labels = {(a.id, b.id): y for a, b, y in q.labelled_pairs()}
    assert labels == {("new-0", "cat-0"): True, ("new-1", "cat-1"): True}
    assert q.stats()["pending"] == 1
    assert q.undo("nobody") is None
    q.close()


def test_skip_puts_the_pair_at_the_back(tmp_path):
    with ReviewQueue(tmp_path / "q.sqlite") as q:
        q.add_pairs(items(2))
        first = q.lease("ann")
        q.decide(first.id, "ann", "skip")
        assert q.lease("ann").id != first.id
        with pytest.raises(ValueError):
            q.decide(first.id, "ann", "maybe")


# ---------------------------------------------------------------- PostgreSQL, when a local server can be started


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    pytest.importorskip("psycopg", reason="psycopg is not installed")
    bindir = Path("/usr/lib/postgresql")
    versions = sorted(bindir.glob("*/bin/initdb")) if bindir.is_dir() else []
    initdb = str(versions[-1]) if versions else shutil.which("initdb")
    if not initdb:
        pytest.skip("no PostgreSQL server binaries (Debian's postgresql package)")
    bin_dir = Path(initdb).parent
    as_user: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser")
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user")
        as_user = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="modalens-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if as_user:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    port = _free_port()
    try:
        subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                       check=True, capture_output=True, timeout=120)
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-t", "60", "-l", str(root / "log"), "-o",
                        f"-p {port} -k {sock} -c listen_addresses=''", "start"], check=True, capture_output=True, timeout=90)
    except (subprocess.SubprocessError, OSError) as e:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"cannot start a local PostgreSQL server: {e}")
    try:
        yield f"postgresql://postgres@/postgres?host={sock}&port={port}"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], check=False, capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def test_postgres_same_code_same_guarantees(postgres_url):
    check_leases_are_exclusive(postgres_url)
    with ReviewQueue(postgres_url) as q:
        q.add_pairs(items(3))
        pair = q.lease("dan")
        q.decide(pair.id, "dan", "match")
        assert q.undo("dan").id == pair.id
    with ReviewQueue(postgres_url) as q:  # a new connection sees every committed change
        assert [r["undone"] for r in q.decisions() if r["reviewer"] == "dan"] == [1]
