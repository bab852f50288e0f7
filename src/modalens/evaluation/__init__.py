"""Evaluation: metrics on arrays (``metrics``) and tasks on a model + products (``tasks``)."""
