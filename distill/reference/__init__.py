"""Independent restatements that distill's own code is measured or checked against, kept apart from it:
``bench_train`` (the official TinyBERT training loop, for ``python -m distill bench train``) and
``augment`` (TinyBERT's per-word augmentation, the oracle for ``distill.augment``'s batched one)."""
