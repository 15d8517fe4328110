"""Fairness of the prompts a run sends: counterfactual sensitive attributes and user-group gaps.

* :mod:`~promptopt.fairness.similarity` — FaiRLLM's list similarities (Jaccard@K, SERP*@K, PRAG*@K)
  and their per-attribute summaries (SNSR, SNSV), pure functions;
* :mod:`~promptopt.fairness.attributes` — the sensitive attributes, their values and the sentence
  stating a value (YAML; the built-in ``fairllm`` set);
* :mod:`~promptopt.fairness.counterfactual` — a request's copy stating one value (same candidates,
  same shown order);
* :mod:`~promptopt.fairness.rankings` — every audited prompt and its copies, ranked through the cache;
* :mod:`~promptopt.fairness.summary` — similarity by value, SNSR / SNSV and their noise level
  (label-shuffled copies);
* :mod:`~promptopt.fairness.groups` — accuracy gaps between the dataset's user groups;
* :mod:`~promptopt.fairness.audit` — :func:`~promptopt.fairness.audit.fairness_audit`, all of it
  in one call;
* :mod:`~promptopt.fairness.penalty` — the fairness-aware reward (``reward.fairness_weight``).

Nothing is imported here, so the core's modules can name these without loading them.
"""
