"""Cold start of the CLI's query commands: each command as a whole process, paired with `modalens --version`.

    .venv/bin/python benchmarks/cold_start.py [--repeats 5] [--before] [--eval] [--index DIR]

A user at a terminal, a shell script tagging files one by one, or a back office calling the CLI pays for
the whole process: interpreter start, imports, model files, the query. Each round runs `modalens --version`
(the baseline: interpreter + the CLI's own imports) and then every command once, each in a fresh
process, so load from other processes falls on all of them alike; the figures are medians over the rounds
(default 5) of wall time, CPU time (user + system) and peak resident memory, read from the child's own
``wait4`` rusage (``ru_maxrss``). "over --version" is the median of the per-round differences.

The index is KAGL test (946 products), built once with `modalens index` (which also makes the model's
ONNX export). One warm-up round is not counted: the numbers are a cold *process* with the operating
system's file cache warm and Python's bytecode cached (as for an installed package), what a second
call of the same command sees. ``--before`` adds every command again with
``MODALENS_AUTO_EXPORT=0``: the PyTorch model with its towers in ONNX Runtime, the path the CLI took
before it answered from the export (the baseline of issue #17); ``--eval`` adds a read-only `modalens
eval` and `modalens match run`.

Targets (issue #17): search ≤ 1.0 s wall and ≤ 300 MiB; tag ≤ 1.5 s wall. Prints the machine and a table;
writes JSON to benchmarks/results/cold_start.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import cpu_model, load_average  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
QUERY = "red summer dress"
LABELS = "dress,shirt,jeans,watch,shoes,handbag,sunglasses,kurta,saree,tshirt"
TARGETS = {"search": (1.0, 300), "search --image": (1.0, 300), "tag": (1.5, None)}


def run_once(args: list[str], env: dict[str, str]) -> dict[str, float]:
    """One whole process: wall seconds, CPU seconds (user + system) and peak RSS in MiB, from its own rusage."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "modalens", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    stderr = child.stderr.read().decode(errors="replace") if child.stderr else ""
    if child.stderr:
        child.stderr.close()
    if child.returncode != 0:
        raise SystemExit(f"`modalens {' '.join(args)}` failed ({child.returncode}):\n{stderr[-2000:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_mib": usage.ru_maxrss / 1024}


def ensure_index(index: Path, env: dict[str, str]) -> None:
    if (index / "index.sqlite").exists():
        return
    print(f"building the index {index} (kagl:test, once) ...", flush=True)
    subprocess.run([sys.executable, "-m", "modalens", "index", "kagl:test", "--index", str(index)], env=env, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="Counted rounds (median over them).")
    parser.add_argument("--index", type=Path, default=None, help="Index folder (default: <cache>/indexes/cold-start-kagl-test).")
    parser.add_argument("--before", action="store_true", help="Also time each command on the PyTorch model (MODALENS_AUTO_EXPORT=0).")
    parser.add_argument("--eval", action="store_true", help="Also time a read-only `eval` and `match run`.")
    args = parser.parse_args()

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    env.pop("MODALENS_BACKEND", None)
    # Bytecode cached, as an installed package has it (pip compiles it); a checkout run with
    # PYTHONDONTWRITEBYTECODE=1 would compile every modalens module in every process. Kept out of the tree.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(RESULTS / "pycache")
    from modalens.catalog import read_catalog
    from modalens.paths import cache_dir

    index = args.index or cache_dir() / "indexes" / "cold-start-kagl-test"
    ensure_index(index, env)
    products = read_catalog("kagl:test").products
    photo = next(p.image for p in products if p.get("article_type") == "Dresses")
    photos = [p.image for p in products[:3]]

    commands: dict[str, tuple[list[str], dict[str, str]]] = {
        "--version": (["--version"], env),
        "search": (["search", QUERY, "-k", "5", "--index", str(index)], env),
        "search --image": (["search", "--image", photo, "-k", "5", "--index", str(index)], env),
        "tag": (["tag", photo, "--labels", LABELS], env),
        "tag (3 photos)": (["tag", *photos, "--labels", LABELS], env),
    }
    if args.eval:
        commands["eval (retrieval, zero-shot)"] = (
            ["eval", "--data", "kagl:test", "--tasks", "retrieval,zero-shot", "--resamples", "0", "--no-report", "--no-progress",
             "-o", str(RESULTS / "cold-start-eval")], env)
        commands["match run (40 offers)"] = (
            ["match", "run", str(ROOT / "tests" / "fixtures" / "mini-catalog" / "products.csv"), "--against", "kagl:test",
             "-o", str(RESULTS / "cold-start-match")], env)
    if args.before:
        before_env = {**env, "MODALENS_AUTO_EXPORT": "0"}  # the PyTorch model, towers in ONNX Runtime: the CLI before #17
        for name in [n for n in commands if n != "--version"]:
            commands[f"{name} [PyTorch model]"] = (commands[name][0], before_env)

    print(f"machine: {os.cpu_count()} cores, {cpu_model()}, load {load_average()}; python {sys.version.split()[0]}")
    print(f"index: {index} ({len(products)} products); {args.repeats} rounds + 1 warm-up, each command a fresh process")
    for name, (argv, cmd_env) in commands.items():  # warm-up: makes the export if missing, fills the file cache
        run_once(argv, cmd_env)
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in commands}
    for r in range(args.repeats):
        for name, (argv, cmd_env) in commands.items():
            rounds[name].append(run_once(argv, cmd_env))
        print(f"  round {r + 1}/{args.repeats}: " + ", ".join(f"{n} {rounds[n][-1]['wall_s']:.2f}s" for n in commands), flush=True)

    base = rounds["--version"]
    rows = []
    for name, runs in rounds.items():
        row = {
            "command": name,
            "args": commands[name][0],
            "queries": "pytorch-model" if commands[name][1].get("MODALENS_AUTO_EXPORT") == "0" else "auto",
            **{k: statistics.median(r[k] for r in runs) for k in ("wall_s", "cpu_s", "peak_mib")},
            "wall_over_version_s": statistics.median(r["wall_s"] - b["wall_s"] for r, b in zip(runs, base)),
            "cpu_over_version_s": statistics.median(r["cpu_s"] - b["cpu_s"] for r, b in zip(runs, base)),
            "runs": runs,
        }
        target = TARGETS.get(name)
        if target:
            wall, mib = target
            row["target"] = {"wall_s": wall, "peak_mib": mib, "met": row["wall_s"] <= wall and (mib is None or row["peak_mib"] <= mib)}
        rows.append(row)

    print(f"\n{'command':<44} {'wall s':>7} {'CPU s':>7} {'peak MiB':>9} {'wall − version':>15}  target")
    for row in rows:
        target = row.get("target")
        mark = ""
        if target:
            limit = f"≤ {target['wall_s']} s" + (f", ≤ {target['peak_mib']} MiB" if target["peak_mib"] else "")
            mark = f"{limit} {'✓' if target['met'] else '✗'}"
        print(f"{row['command']:<44} {row['wall_s']:>7.2f} {row['cpu_s']:>7.2f} {row['peak_mib']:>9.0f} {row['wall_over_version_s']:>+15.2f}  {mark}")

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "cold_start.json"
    out.write_text(json.dumps({
        "benchmark": "cold_start", "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "cores": os.cpu_count(), "cpu": cpu_model(),
        "load_after": load_average(), "repeats": args.repeats, "index": str(index), "products": len(products), "rows": rows,
    }, indent=2) + "\n")
    print(f"\nload average after: {load_average()}; wrote {out}")


if __name__ == "__main__":
    main()
