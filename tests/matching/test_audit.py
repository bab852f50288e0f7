"""Audits: automatic decisions queued unmarked, their answers give a running precision / NPV with exact intervals."""

from __future__ import annotations

import pytest
from scipy.stats import beta
from typer.testing import CliRunner

from modalens.cli.match_cmd import app
from modalens.matching.calibration import audit_status
from modalens.matching.offers import Offer
from modalens.matching.review import ReviewQueue


def fill(db, n_accept: int, wrong_accept: int, n_reject: int, wrong_reject: int) -> None:
    """Audit items of both kinds plus one ordinary review pair; a reviewer answers all of them."""
    truth = {}
    with ReviewQueue(db) as q:
        for kind, n, wrong in (("accept", n_accept, wrong_accept), ("reject", n_reject, wrong_reject)):
            for i in range(n):
                a, b = Offer(f"{kind}{i}a", title="x"), Offer(f"{kind}{i}b", title="x")
                q.add_pairs([(a, b, 0.9, 0.99, "score 0.900 (p=0.99)")], source=f"audit:{kind}|test", priority=0.1)
                same = (kind == "accept") != (i < wrong)  # the first `wrong` of each kind were decided wrongly
                truth[(a.id, b.id)] = same
        q.add_pairs([(Offer("r1", title="x"), Offer("r2", title="y"), 0.7, 0.5, "score 0.700 (p=0.50)")], source="test")
        truth[("r1", "r2")] = False
        while (pair := q.lease("ann")) is not None:
            assert "audit" not in str(pair.to_json())  # unmarked: nothing a reviewer sees names the audit
            q.decide(pair.id, "ann", "match" if truth[(pair.left.id, pair.right.id)] else "no-match")


def test_audit_estimate_counts_only_audits_with_exact_intervals(tmp_path):
    db = tmp_path / "q.sqlite"
    fill(db, n_accept=400, wrong_accept=0, n_reject=300, wrong_reject=9)
    with ReviewQueue(db) as q:
        est = q.audit_estimate()
        assert len(q.labelled_pairs()) == 701  # retraining uses the audit answers too
    p, n = est["precision"], est["npv"]
    assert p["audited"] == 400 and p["confirmed"] == 400 and p["rate"] == 1.0
    assert p["lower_bound"] == pytest.approx(beta.ppf(0.05, 400, 1)) and p["status"] == "ok"  # 0.05^(1/400) = 99.25%
    assert n["audited"] == 300 and n["confirmed"] == 291
    assert n["lower_bound"] == pytest.approx(beta.ppf(0.05, 291, 10)) and n["upper_bound"] == pytest.approx(beta.ppf(0.95, 292, 9))
    assert n["upper_bound"] < 0.99 and n["status"] == "alarm" and est["alarm"]  # 97% observed: below target with 95% confidence
    assert est["audits_pending"] == 0


def test_few_audits_are_unproven_not_an_alarm():
    s = audit_status(20, 20, 0.99)
    assert s["status"] == "unproven" and s["lower_bound"] == pytest.approx(0.05 ** (1 / 20)) and s["upper_bound"] == 1.0
    assert audit_status(0, 0, 0.99)["status"] == "unproven"
    assert audit_status(90, 100, 0.99)["status"] == "alarm"


def test_match_audit_command_reports_and_alarms(tmp_path):
    runner = CliRunner()
    ok = tmp_path / "ok.sqlite"
    fill(ok, n_accept=400, wrong_accept=0, n_reject=400, wrong_reject=0)
    result = runner.invoke(app, ["audit", str(ok)])
    assert result.exit_code == 0, result.output
    assert "auto-accept precision: 100.00% of 400 audited" in result.output and ": ok" in result.output
    bad = tmp_path / "bad.sqlite"
    fill(bad, n_accept=300, wrong_accept=9, n_reject=10, wrong_reject=0)
    result = runner.invoke(app, ["audit", str(bad)])
    assert result.exit_code == 3 and "ALARM" in result.output and "unproven" in result.output


def test_match_audit_tighten_writes_a_matcher_with_the_alarmed_threshold_raised(tmp_path):
    import numpy as np

    from modalens.matching.calibration import Calibrator, Thresholds
    from modalens.matching.pipeline import Matcher

    scores, labels = np.r_[np.linspace(0.6, 1, 400), np.linspace(0, 0.5, 400)], np.r_[np.ones(400, bool), np.zeros(400, bool)]
    Matcher(None, Calibrator().fit(scores, labels), Thresholds(accept=0.85, reject=0.5, reject_nearest=0.45)).save(tmp_path / "m")
    bad = tmp_path / "bad.sqlite"
    fill(bad, n_accept=300, wrong_accept=9, n_reject=10, wrong_reject=0)  # every audit item scores 0.9
    result = CliRunner().invoke(app, ["audit", str(bad), "--model", str(tmp_path / "m"), "--tighten", str(tmp_path / "m2")])
    assert result.exit_code == 3 and "ALARM" in result.output and "tightened main: accept threshold 0.8500 →" in result.output
    old, new = Matcher.load(tmp_path / "m").thresholds, Matcher.load(tmp_path / "m2").thresholds
    assert old.accept == 0.85 and new.accept > 0.9  # past the audited accepts at 0.9, which held the 9 wrong merges
    assert (new.reject, new.reject_nearest) == (0.5, 0.45)  # NPV was not in alarm
    assert any("tightened after audits" in n for n in new.notes)
    result = CliRunner().invoke(app, ["audit", str(bad), "--model", str(tmp_path / "m"), "--tighten", str(tmp_path / "m")])
    assert result.exit_code != 0 and "new folder" in result.output and "Traceback" not in result.output
