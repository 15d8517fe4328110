"""What a tiny instruct LLM can and cannot do as the frozen ranker, measured: ``docs/RESULTS_smollm2.md``.

One command (``python -m promptopt.experiments.tiny_llm experiments/configs/tiny_llm_ml100k.yaml``) ranks
the same
test users' tasks (the same candidates, the same shown orders and their shuffled copies) with
SmolLM2-135M-Instruct in the hf backend's score mode (index labels and title labels) and generate mode
(with and without BIGRec's embedding grounding), beside chance, the shown order itself, training
popularity, the run's own LightGCN and the MiniLM embedding ranker, and writes the report.

* :mod:`~promptopt.experiments.tiny_llm.config`: the YAML (a ``tiny_llm`` protocol section and an ordinary
  ``experiment``).
* :mod:`~promptopt.experiments.tiny_llm.measures`: pure functions: merging shuffled copies, metrics by
  shown position.
* :mod:`~promptopt.experiments.tiny_llm.protocol`: builds the tasks and the rankers and runs every row.
* :mod:`~promptopt.experiments.tiny_llm.markdown`: the report.
"""
