"""Audits of a run directory: ``promptopt audit fairness RUN`` (:mod:`experiments.audit.fairness_run`),
its report (:mod:`~experiments.audit.markdown`) and plots (:mod:`~experiments.audit.plots`)."""
