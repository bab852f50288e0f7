"""Which zero-shot prompt templates help? A thin wrapper around the `templates` evaluation task.

    .venv/bin/python benchmarks/prompt_templates.py [--data kagl:val fashion-mnist:test] [--model modalens-lite]
                                                    [--templates-file my_templates.txt]

The same numbers as `modalens eval --data kagl:val --tasks templates` (see docs/evaluation.md,
"Which templates help"): each template alone, the full ensemble and the ensemble without each
template, with 95% bootstrap intervals and paired differences from the ensemble. Choose templates on
a validation split (kagl:val), not on the test split you report. Writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from machine import cpu_model  # benchmarks/machine.py

from modalens.evaluation import files
from modalens.evaluation.runner import EvalSettings, evaluate
from modalens.evaluation.templates import read_templates, summary_lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=["kagl:val", "fashion-mnist:test"])
    parser.add_argument("--model", default="modalens-lite")
    parser.add_argument("--field", default="article_type")
    parser.add_argument("--templates-file", help="one template per line, each with {label} (default: the built-in ensemble)")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "prompt_templates.json")
    args = parser.parse_args()
    templates = tuple(read_templates(args.templates_file)) if args.templates_file else None
    settings = EvalSettings(field=args.field, templates=templates, templates_from=args.templates_file)
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}; model {args.model}")
    record = {}
    for data in args.data:
        record[data] = evaluate(args.model, data, ["templates"], settings).results["templates"]
        print(f"\n{data}:\n" + "\n".join(summary_lines(record[data])))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    files.write_text_atomic(args.output, files.dumps({"model": args.model, "cpu": cpu_model(), "results": record}) + "\n")


if __name__ == "__main__":
    main()
