"""Audits of a run directory: ``promptopt audit fairness RUN``
(:mod:`promptopt.experiments.audit.fairness_run`),
its report (:mod:`~promptopt.experiments.audit.markdown`) and plots
(:mod:`~promptopt.experiments.audit.plots`)."""
