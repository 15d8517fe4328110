"""Benchmarks: each prints one table with ratios measured side by side in the same run."""
