"""The study: does per-user prompt choice pay on real data? One command writes docs/RESULTS.md.

    promptopt study experiments/configs/study_ml100k.yaml [--data.path=...] [--study.seeds=[0]]
    python -m promptopt.experiments.study experiments/configs/study_ml100k.yaml [--report-from STUDY_JSON]

One job per module, the lowest layer first (each imports only modules listed before it):

* :mod:`~promptopt.experiments.study.config` — :class:`StudyConfig` (the ``study`` section) and
  ``load_study``;
* :mod:`~promptopt.experiments.study.choice_rules` — the call counter of a budget, the ridge selector and
  the per-user bounds (the safe policy itself is :mod:`promptopt.safe_policy`): no study state;
* :mod:`~promptopt.experiments.study.answers` — :class:`AnswerTable`: every template's score for a set of
  users;
* :mod:`~promptopt.experiments.study.provenance` — the machine, its load and the answer cache's summary;
* :mod:`~promptopt.experiments.study.pooled` — per-user results pooled over seeds, bootstrap intervals;
* :mod:`~promptopt.experiments.study.targets` — the five targets, measured from ``study.json``;
* :mod:`~promptopt.experiments.study.plots` — the PNG plots;
* :mod:`~promptopt.experiments.study.markdown` — markdown helpers and the report's detail sections;
* :mod:`~promptopt.experiments.study.report` — ``write_results``: plots, attempts log and RESULTS.md;
* :mod:`~promptopt.experiments.study.protocol` — ``run_study``: answer tables, then per seed and reward the
  pipeline's own LightGCN, PPO training, agent loading and selectors, then the report;
* ``__main__`` — ``python -m promptopt.experiments.study`` (also ``--report-from`` a finished ``study.json``).

The package imports nothing at import time; import the module you need.
"""
