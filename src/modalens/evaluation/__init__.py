"""Evaluation: how good is a model?

    metrics      metrics on plain arrays (ranks, R@K, MRR, P@K, AP@K, F1, k-NN), tested on hand cases
    bootstrap    95% bootstrap intervals and paired differences, vectorised
    tasks        tasks on a model + products (retrieval, zero-shot, category/image retrieval, k-NN, linear probe)
    templates    which zero-shot prompt templates help: each alone, the ensemble, leave-one-out; templates files
    composition  attribute binding and layout on seeded scenes (SugarCrepe-style, symmetric pairs); blind.py its text-only baseline
    runner       one model (``evaluate``) or several side by side (``compare``) on one catalogue
    report       the self-contained HTML report; ``plots`` draws its figures
    leaderboard  a Markdown table from results files
    files        strict-JSON results and where they go

See docs/evaluation.md.
"""
