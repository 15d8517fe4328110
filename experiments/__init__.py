"""Thin scripts, the ``promptopt`` command line, YAML configs, sweeps and benchmarks."""
