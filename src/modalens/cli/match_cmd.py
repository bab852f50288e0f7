"""`modalens match`: match new offers against a catalogue, review doubtful pairs, retrain, measure.

    modalens match NEW_OFFERS --against CATALOGUE [--review-db reviews.sqlite]
    modalens match train --data kagl --out runs/matcher
    modalens match eval --data kagl --out docs/matching
    modalens match review reviews.sqlite --port 8010
    modalens match retrain --reviews reviews.sqlite --out runs/matcher-2

``modalens match FILE ...`` (a first argument that is no sub-command name) runs ``match run``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from .common import PROGRESS_OPTION, user_errors


class _DefaultRun(TyperGroup):
    """``match NEW --against CAT`` means ``match run NEW --against CAT``."""

    def parse_args(self, ctx, args):  # type: ignore[override]
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_DefaultRun,
    no_args_is_help=True,
    add_completion=False,
    help="Product matching with people in the loop: match offers, review doubtful pairs, retrain.",
)

MODEL_DIR = typer.Option(None, "--model", "-m", help="Matcher folder (default: the shipped one, trained on KAGL train).")
ONNX = typer.Option(True, "--onnx/--no-onnx", help="Run the image tower in ONNX Runtime when available (same features, faster).")


def _featurizer(onnx: bool, progress: bool | None = None):
    """``progress``: the command's --progress/--no-progress (None: bars only when stderr is a terminal)."""
    from ..matching.features import OfferFeaturizer, fast_image_tower
    from ..progress import show_progress

    return OfferFeaturizer(fast_image_tower() if onnx else None, progress=show_progress(progress))


def _scoring_matcher(model: Path | None, onnx: bool, progress: bool | None = None):
    """The matcher `match run` scores with: with --onnx, both towers from modalens-photo's cached ONNX export (matching.features.TOWER_SOURCE_MODEL) and
    the offer model on numpy (no torch imported) when the export has the matcher's towers; else PyTorch, as before."""
    from ..matching.features import OfferFeaturizer, export_towers
    from ..matching.pipeline import Matcher

    towers = export_towers() if onnx else None
    if towers is not None:
        return Matcher.load(model, featurizer=OfferFeaturizer(*towers), numpy=True)
    return Matcher.load(model, featurizer=_featurizer(onnx, progress))


def _check_bound(name: str | None) -> str:
    """A bound's name as ``--precision-bound``/``--npv-bound`` gave it (None: the package default), checked:
    a clear error, not a traceback. Imported here, not at module level: ``--help`` stays light."""
    from ..matching.calibration import BOUNDS

    if name is not None and name not in BOUNDS:
        raise typer.BadParameter(f"unknown bound {name!r}; choose one of {', '.join(BOUNDS)}")
    return name  # type: ignore[return-value]


def _bounds(precision_bound: str | None, npv_bound: str | None) -> dict[str, str]:
    """The two bounds to calibrate with: as given, else the package defaults (``matching.calibration``)."""
    from ..matching.calibration import DEFAULT_NPV_BOUND, DEFAULT_PRECISION_BOUND

    return {"precision_bound": precision_bound or DEFAULT_PRECISION_BOUND, "npv_bound": npv_bound or DEFAULT_NPV_BOUND}


CONFIDENCE = typer.Option(0.95, min=0.0, max=0.999, help="One-sided confidence of the lower bounds that must reach the targets (0: the point estimate must).")
PRECISION_BOUND = typer.Option(None, "--precision-bound", callback=_check_bound, help="Which lower bound of precision the accept cut must reach: clopper-pearson, clustered (default) or prediction (docs/matching.md).")
NPV_BOUND = typer.Option(None, "--npv-bound", callback=_check_bound, help="Which lower bound of NPV the reject cuts must reach: clopper-pearson, clustered or prediction (default).")
MORE_VAL = typer.Option(
    "kagl-full", "--more-val",
    help="Another catalogue whose val split (its products not in --data) also calibrates, cut into scenarios the size of "
         "--data's val split; its small-photo pairs (short side < 128 px) get thresholds of their own. 'none': only --data's val.",
)


def _more_val(source: str, data: str) -> list:
    """Val products of ``source`` that are not in ``data`` (none when ``source`` is 'none' or cannot be read: a warning)."""
    if source.strip().lower() in ("", "none"):
        return []
    from ..catalog import read_catalog

    try:
        products = [p for p in read_catalog(source).products if p.split == "val" and p.image]
    except Exception as e:  # e.g. the catalogue is not on this machine: calibrate on --data alone, and say so
        typer.echo(f"warning: --more-val {source}: {e}; calibrating on {data} val alone", err=True)
        return []
    taken = {p.id for p in read_catalog(data).products}
    return [p for p in products if p.id not in taken]


def _split(source: str, name: str):
    from ..catalog import read_catalog

    catalog = read_catalog(source)
    products = [p for p in catalog.products if p.split == name and p.image]
    if not products:
        raise ValueError(f"{source} has no products with photos in split {name!r}")
    return products


@app.command("run")
@user_errors
def run(
    new_offers: str = typer.Argument(..., help="New offers: a catalogue file/folder (kagl:test, .csv, .jsonl) or offers JSONL."),
    against: str = typer.Option(..., "--against", "-a", help="The catalogue to match against (same formats)."),
    model: Path | None = MODEL_DIR,
    k: int = typer.Option(5, "-k", min=1, max=100, help="Candidates per new offer."),
    out: Path = typer.Option(Path("match-out"), "--out", "-o", help="Folder for pairs.jsonl, groups.json, summary.json."),
    review_db: str | None = typer.Option(None, "--review-db", help="Queue the doubtful pairs here (SQLite path or postgresql:// URL)."),
    new_new: bool = typer.Option(True, "--new-new/--no-new-new", help="Also match new offers among themselves."),
    audit_share: float = typer.Option(0.0, "--audit-share", min=0.0, max=1.0,
                                      help="With --review-db: also queue this share of the automatically accepted and rejected pairs, unmarked, as audit items (see `match audit`)."),
    onnx: bool = ONNX,
    progress: Optional[bool] = PROGRESS_OPTION,
) -> None:
    """Match NEW_OFFERS against a catalogue: candidates, scores, groups, and accept / reject / review per pair."""
    from ..matching.offers import read_offers
    from ..matching.pipeline import write_result

    new = read_offers(new_offers, seller="new offers")  # so a reviewer sees which side is which
    catalogue = read_offers(against, seller="catalogue")
    if not new:
        raise ValueError(f"{new_offers} holds no offers")
    matcher = _scoring_matcher(model, onnx, progress)
    result = matcher.match(new, catalogue, k=k, new_new=new_new)
    paths = write_result(result, out)
    counts = result.counts()
    total = max(len(result.pairs), 1)
    typer.echo(
        f"{len(new)} new offers against {len(catalogue)}: {len(result.pairs)} candidate pairs — "
        f"accept {counts['accept']}, reject {counts['reject']}, review {counts['review']} "
        f"({(counts['accept'] + counts['reject']) / total:.0%} decided automatically); {len(result.groups)} match groups"
    )
    typer.echo(f"thresholds: accept ≥ {matcher.thresholds.accept:.3f}, reject < {matcher.thresholds.reject:.3f} "
               f"(target precision {matcher.thresholds.target_precision:.0%}); results in {paths['pairs'].parent}")
    for name, (_, th) in matcher.strata.items():
        typer.echo(f"{name}: accept ≥ {th.accept:.3f}, reject < {th.reject:.3f} (pairs with a photo under 128 px)")
    for note in matcher.thresholds.notes:
        typer.echo(f"warning: {note}", err=True)
    for offer_id, reason in list(result.failures.items())[:10]:
        typer.echo(f"warning: {offer_id}: {reason}", err=True)
    if review_db:
        from ..matching.review import ReviewQueue

        by_id = {o.id: o for o in [*new, *catalogue]}
        # with audits on, every queued pair carries the same neutral reason, so audit items look like the others
        neutral = (lambda p: f"score {p.score:.3f} (p={p.probability:.2f})") if audit_share > 0 else (lambda p: p.reason)
        items = [(by_id[p.left], by_id[p.right], p.score, p.probability, neutral(p)) for p in result.pairs if p.decision == "review"]
        with ReviewQueue(review_db) as queue:
            added = queue.add_pairs(items, source=str(new_offers))
            audits = 0
            if audit_share > 0:
                import random

                rng = random.Random(f"audit|{new_offers}|{against}")
                for kind in ("accept", "reject"):
                    chosen = [p for p in result.pairs if p.decision == kind and rng.random() < audit_share]
                    for p in chosen:  # a priority spread over the doubtful ones' range: audits come mixed in
                        audits += queue.add_pairs([(by_id[p.left], by_id[p.right], p.score, p.probability, neutral(p))],
                                                  source=f"audit:{kind}|{new_offers}", priority=rng.uniform(0.0, 0.5))
        typer.echo(f"queued {added} new pairs for review in {review_db} (serve them with `modalens match review {review_db}`)"
                   + (f", and {audits} audit items ({audit_share:.1%} of the automatic decisions, unmarked)" if audit_share > 0 else ""))


@app.command("train")
@user_errors
def train(
    data: str = typer.Option("kagl", "--data", "-d", help="Catalogue with train/val splits; offers are generated from it."),
    out: Path = typer.Option(Path("runs/matcher"), "--out", "-o", help="Folder for the trained matcher."),
    parts: str = typer.Option("images,title", help="Offer parts: images, frozen_images, title, description, numbers (numbers need real prices)."),
    epochs: int = typer.Option(30, min=1),
    batch_size: int = typer.Option(256, min=2),
    target_precision: float = typer.Option(0.99, min=0.5, max=1.0),
    target_npv: float = typer.Option(0.99, min=0.5, max=1.0),
    calibration: str = typer.Option("isotonic", help="isotonic or platt"),
    seed: int = typer.Option(0),
    confidence: float = CONFIDENCE,
    precision_bound: Optional[str] = PRECISION_BOUND,
    npv_bound: Optional[str] = NPV_BOUND,
    near_duplicates: bool = typer.Option(False, "--near-duplicates/--no-near-duplicates", help="Also calibrate on every pair of near-duplicate products (same type and colour, near-identical titles) as non-matches."),
    mutual_best: bool = typer.Option(True, "--mutual-best/--no-mutual-best", help="Accept only pairs whose score reaches every score either offer has with a third offer; the accept threshold is chosen on such pairs."),
    more_val: str = MORE_VAL,
    onnx: bool = ONNX,
    progress: Optional[bool] = PROGRESS_OPTION,
) -> None:
    """Train an offer model on generated pairs of the train split, calibrate it on the val split."""
    from ..matching.evaluate import Scenario, calibrate, calibration_scenarios
    from ..matching.offer_model import OfferModelConfig
    from ..matching.pipeline import Matcher
    from ..matching.train import TrainConfig, train_offer_model, training_data

    featurizer = _featurizer(onnx, progress)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed)
    model, history = train_offer_model(
        training_data(_split(data, "train"), seed=seed, copies=config.copies), featurizer,
        model_config=OfferModelConfig(parts=tuple(p.strip() for p in parts.split(",") if p.strip())), config=config,
    )
    matcher = Matcher(model, featurizer=featurizer, info={"trained_on": f"{data} train (generated pairs)", "train_source": data, "seed": seed})
    val = _split(data, "val")
    extra = _more_val(more_val, data)
    calibrate(matcher, Scenario(val, featurizer, seed=f"val{seed}"), target_precision=target_precision,
              target_npv=target_npv, method=calibration, confidence=confidence or None, near_duplicates=near_duplicates,
              mutual_best_only=mutual_best, more=calibration_scenarios(extra, len(val), featurizer, seed=f"val{seed}") if extra else (),
              **_bounds(precision_bound, npv_bound))
    matcher.info["calibrated_on"] = f"{data} val (generated scenario)" + (f" + {len(extra)} {more_val} val products" if extra else "")
    matcher.save(out)
    typer.echo(f"loss {history[0]:.3f} → {history[-1]:.3f}")
    _echo_rule(matcher)
    typer.echo(f"saved to {out}")


def _echo_rule(matcher) -> None:
    """The thresholds of each stratum with what they promise on the calibration pairs."""
    th = matcher.thresholds
    typer.echo(f"on val: {th.describe()}; {th.fit_share_auto:.1%} of {th.fit_pairs} pairs decided automatically")
    for name, (_, s) in matcher.strata.items():
        typer.echo(f"{name}: {s.describe()}; {s.fit_share_auto:.1%} of {s.fit_pairs} pairs decided automatically")


@app.command("calibrate")
@user_errors
def calibrate_cmd(
    model: Path | None = MODEL_DIR,
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the re-calibrated matcher (the model is copied unchanged)."),
    data: str = typer.Option("kagl", "--data", "-d", help="Catalogue whose val split calibrates."),
    more_val: str = MORE_VAL,
    target_precision: float = typer.Option(0.99, min=0.5, max=1.0),
    target_npv: float = typer.Option(0.99, min=0.5, max=1.0),
    confidence: float = CONFIDENCE,
    precision_bound: Optional[str] = PRECISION_BOUND,
    npv_bound: Optional[str] = NPV_BOUND,
    seed: int = typer.Option(0),
    onnx: bool = ONNX,
    progress: Optional[bool] = PROGRESS_OPTION,
) -> None:
    """Choose a matcher's thresholds again on val products (no training): e.g. with small-photo thresholds of their own."""
    from ..matching.evaluate import Scenario, calibrate, calibration_scenarios
    from ..matching.pipeline import Matcher

    featurizer = _featurizer(onnx, progress)
    matcher = Matcher.load(model, featurizer=featurizer)
    val = _split(data, "val")
    extra = _more_val(more_val, data)
    calibrate(matcher, Scenario(val, featurizer, seed=f"val{seed}"), target_precision=target_precision, target_npv=target_npv,
              method=matcher.calibrator.method if matcher.calibrator else "isotonic", confidence=confidence or None,
              mutual_best_only=matcher.thresholds.mutual_best_only if matcher.thresholds else True,
              more=calibration_scenarios(extra, len(val), featurizer, seed=f"val{seed}") if extra else (),
              **_bounds(precision_bound, npv_bound))
    matcher.info["calibrated_on"] = f"{data} val (generated scenario)" + (f" + {len(extra)} {more_val} val products in scenarios of about {len(val)}" if extra else "")
    matcher.save(out)
    _echo_rule(matcher)
    typer.echo(f"saved to {out}")


@app.command("eval")
@user_errors
def evaluate(
    data: str = typer.Option("kagl", "--data", "-d", help="Catalogue with train/val/test splits."),
    out: Path = typer.Option(Path("docs/matching"), "--out", "-o", help="Folder for results.json, table.md, precision-recall.png."),
    epochs: int = typer.Option(30, min=1),
    target_precision: float = typer.Option(0.99, min=0.5, max=1.0),
    target_npv: float = typer.Option(0.99, min=0.5, max=1.0),
    k: int = typer.Option(5, "-k", min=1, max=100),
    seed: int = typer.Option(0),
    ablations: bool = typer.Option(True, "--ablations/--no-ablations", help="Also train single-part and two-part models."),
    save_model: Path | None = typer.Option(None, "--save-model", help="Also save the full matcher here."),
    confidence: float = CONFIDENCE,
    precision_bound: Optional[str] = PRECISION_BOUND,
    npv_bound: Optional[str] = NPV_BOUND,
    near_duplicates: bool = typer.Option(False, "--near-duplicates/--no-near-duplicates", help="Also calibrate on every pair of near-duplicate products (same type and colour, near-identical titles) as non-matches."),
    mutual_best: bool = typer.Option(True, "--mutual-best/--no-mutual-best", help="Accept only pairs whose score reaches every score either offer has with a third offer; the accept threshold is chosen on such pairs."),
    more_val: str = MORE_VAL,
    onnx: bool = ONNX,
    progress: Optional[bool] = PROGRESS_OPTION,
) -> None:
    """Train on train, calibrate on val, measure on test (offers generated from products never trained on); baseline included."""
    import logging

    from ..catalog import read_catalog
    from ..matching import evaluate as ev
    from ..matching.train import TrainConfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    variants = ev.VARIANTS if ablations else (ev.VARIANTS[0], ev.VARIANTS[3])
    summary = ev.run(
        read_catalog(data).products, out_dir=out, variants=variants, train_config=TrainConfig(epochs=epochs, seed=seed),
        featurizer=_featurizer(onnx, progress), k=k, target_precision=target_precision,
        target_npv=target_npv, seed=seed, save_best=save_model, confidence=confidence or None, near_duplicates=near_duplicates,
        mutual_best_only=mutual_best, more_val=_more_val(more_val, data),
        **_bounds(precision_bound, npv_bound),
    )
    typer.echo(ev.markdown_table(summary["rows"]))
    bounds = _bounds(precision_bound, npv_bound)
    typer.echo(f"thresholds chosen on val with one-sided {confidence:.0%} lower bounds ≥ target (precision: {bounds['precision_bound']}, NPV: {bounds['npv_bound']}):" if confidence
               else "thresholds chosen on val where the point estimate reaches the target (no confidence bound):")
    typer.echo(ev.guarantee_lines(summary["rows"]))
    typer.echo(f"results in {out}")


@app.command("review")
@user_errors
def review(
    db: str = typer.Argument(..., help="Review queue: SQLite path or postgresql:// URL."),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8010),
    lease_seconds: float = typer.Option(300.0, help="How long a pair stays with a reviewer who does not answer."),
    add_reviewer: list[str] = typer.Option(
        [], "--add-reviewer", help="Create (or replace) this reviewer's key, print it once, and exit; repeat for several."
    ),
    remove_reviewer: list[str] = typer.Option([], "--remove-reviewer", help="Revoke this reviewer's key and exit."),
    list_reviewers: bool = typer.Option(False, "--list-reviewers", help="Print the reviewers who have a key and exit."),
) -> None:
    """Serve the reviewer page: two offers side by side, a = same, r = different, s = skip, u = undo.

    Reviewers sign in with a key (X-API-Key); make one with --add-reviewer NAME. Keys are stored
    hashed in the queue's database, so a lost key is replaced, not recovered."""
    from ..matching.review import ReviewQueue

    if add_reviewer or remove_reviewer or list_reviewers:
        with ReviewQueue(db, lease_seconds=lease_seconds) as queue:
            for name in add_reviewer:
                typer.echo(f"{name.strip()}\t{queue.add_reviewer(name)}")
            for name in remove_reviewer:
                if not queue.remove_reviewer(name):
                    raise KeyError(f"no reviewer {name!r} in {db}")
                typer.echo(f"removed {name.strip()}")
            if list_reviewers:
                for name in queue.reviewers():
                    typer.echo(name)
        if add_reviewer:
            typer.echo("keys are shown only now: give each reviewer theirs (the page asks for it)", err=True)
        return

    import uvicorn

    from ..serving import create_review_app

    with ReviewQueue(db) as queue:
        known = queue.reviewers()
    typer.echo(f"review page at http://{host}:{port}/review/ (queue {db}; {len(known)} reviewers with keys)")
    if not known:
        typer.echo(f"warning: no reviewer has a key yet; create one with `modalens match review {db} --add-reviewer NAME`", err=True)
    uvicorn.run(create_review_app(db, lease_seconds=lease_seconds), host=host, port=port, log_level="warning")


@app.command("audit")
@user_errors
def audit(
    db: str = typer.Argument(..., help="Review queue: SQLite path or postgresql:// URL."),
    target_precision: float = typer.Option(0.99, min=0.5, max=1.0),
    target_npv: float = typer.Option(0.99, min=0.5, max=1.0),
    confidence: float = typer.Option(0.95, min=0.5, max=0.999),
    tighten: Optional[Path] = typer.Option(
        None, "--tighten", help="On an alarm, write a copy of the matcher (--model) here with the alarmed thresholds moved past the "
                                "audited wrong decisions until the audits left in the automatic region are no longer in alarm."),
    model: Path | None = MODEL_DIR,
) -> None:
    """Running precision / NPV of the automatic decisions from the audit items people answered; exit 3 on an alarm."""
    from ..matching.review import ReviewQueue

    with ReviewQueue(db) as queue:
        est = queue.audit_estimate(target_precision=target_precision, target_npv=target_npv, confidence=confidence)
        answers = queue.audit_answers(with_offers=tighten is not None and est["alarm"])
    for name, label in (("precision", "auto-accept precision"), ("npv", "auto-reject NPV")):
        e = est[name]
        rate = "–" if e["audited"] == 0 else f"{e['rate']:.2%}"
        typer.echo(f"{label}: {rate} of {e['audited']} audited ({confidence:.0%} interval {e['lower_bound']:.2%} – {e['upper_bound']:.2%}), "
                   f"target {e['target']:.0%}: {e['status']}")
    typer.echo(f"{est['audits_pending']} audit items still pending")
    if est["alarm"]:
        typer.echo("ALARM: an automatic region is below its target with "
                   f"{confidence:.0%} confidence; re-calibrate (`modalens match retrain`) or raise the thresholds"
                   + ("" if tighten else " (`--tighten OUT`)"), err=True)
        if tighten is not None:
            _tighten(model, tighten, answers, confidence)
        raise typer.Exit(3)


def _tighten(model: Path | None, out: Path, answers: list, confidence: float) -> None:
    """Copy the matcher folder to ``out`` with each stratum's thresholds tightened on the audits it decided."""
    import shutil

    from ..matching.calibration import Thresholds, load_calibration, save_calibration, tighten_for_audits
    from ..matching.pipeline import CALIBRATION_FILE, PRETRAINED_DIR, SMALL_PHOTOS, small_photos

    source = Path(model) if model else PRETRAINED_DIR
    if not (source / CALIBRATION_FILE).is_file():
        raise FileNotFoundError(f"no matcher in {source} (expected {CALIBRATION_FILE})")
    if out.resolve() == source.resolve():
        raise ValueError("--tighten needs a new folder, not the matcher's own (the old thresholds stay as they were)")
    calibrator, thresholds, extra = load_calibration(source / CALIBRATION_FILE)
    strata = extra.get("strata", {})
    small = [False] * len(answers)
    if answers and SMALL_PHOTOS in strata:  # which thresholds decided each audited pair: the small-photo ones if either side is small
        small = (small_photos([a for *_, a, _ in answers]) | small_photos([b for *_, _, b in answers])).tolist()
    changed = []
    for name, th in [("", thresholds)] + [(n, Thresholds.from_dict(s["thresholds"])) for n, s in strata.items()]:
        mine = [a for a, is_small in zip(answers, small) if (name == SMALL_PHOTOS) == bool(is_small)]
        new, lines = tighten_for_audits(th, [(s, ok) for kind, s, ok, *_ in mine if kind == "accept"],
                                        [(s, ok) for kind, s, ok, *_ in mine if kind == "reject"], confidence=confidence)
        changed += [f"{name or 'main'}: {line}" for line in lines]
        if name:
            strata[name]["thresholds"] = new.to_dict()
        else:
            thresholds = new
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(source, out)
    extra["tightened_from"] = str(source)
    save_calibration(out / CALIBRATION_FILE, calibrator, thresholds, extra)
    for line in changed or ["nothing to move: the alarmed audits are not in any automatic region of these thresholds"]:
        typer.echo(f"tightened {line}", err=True)
    typer.echo(f"tightened matcher saved to {out} (use it with --model {out})", err=True)



@app.command("retrain")
@user_errors
def retrain_cmd(
    reviews: str = typer.Option(..., "--reviews", "-r", help="Review queue with decisions (SQLite path or postgresql:// URL)."),
    model: Path | None = MODEL_DIR,
    out: Path = typer.Option(Path("runs/matcher-retrained"), "--out", "-o"),
    data: str | None = typer.Option(None, "--data", "-d", help="Also train on generated pairs of this catalogue's train split and calibrate with its val split (default: none)."),
    more_val: str = MORE_VAL,
    epochs: int = typer.Option(5, min=1),
    lr: float = typer.Option(2e-4, help="Fine-tuning learning rate (a tenth of training's)."),
    seed: int = typer.Option(0),
    onnx: bool = ONNX,
    progress: Optional[bool] = PROGRESS_OPTION,
) -> None:
    """Use reviewed decisions as labels: continue training, re-calibrate the thresholds, save a new matcher."""
    from ..matching.retrain import retrain
    from ..matching.train import TrainConfig

    train_products = _split(data, "train") if data else ()
    val_products = _split(data, "val") if data else ()
    more_val_products = _more_val(more_val, data) if data else ()
    _, report = retrain(model, reviews, out, train_products=train_products, val_products=val_products, more_val_products=more_val_products,
                        config=TrainConfig(epochs=epochs, lr=lr, seed=seed), featurizer=_featurizer(onnx, progress))
    typer.echo(json.dumps(report, indent=2, default=float))
    typer.echo(f"saved to {out}")


if __name__ == "__main__":  # pragma: no cover  (python -m modalens.cli.match_cmd ...)
    sys.exit(app())
