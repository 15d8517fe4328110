"""The LightGCN + MLP policy for stable-baselines3 (Maskable)PPO, and PPO-backed selectors.

Modules: :mod:`policies.graph` (training interaction graph), :mod:`policies.lightgcn` (BPR
pretraining, frozen embeddings), :mod:`policies.extractor` (SB3 features extractors),
:mod:`policies.agent` (``make_agent``), :mod:`policies.selectors` (``PPOSelector``).
Importing this package imports nothing heavy; each module imports torch itself.
"""
