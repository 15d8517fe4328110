"""The LightGCN + MLP policy for stable-baselines3 (Maskable)PPO, and PPO-backed selectors.

Modules: :mod:`promptopt.policies.graph` (training interaction graph), :mod:`promptopt.policies.lightgcn` (BPR
pretraining, frozen embeddings), :mod:`promptopt.policies.extractor` (SB3 features extractors),
:mod:`promptopt.policies.agent` (``make_agent``), :mod:`promptopt.policies.selectors` (``PPOSelector``).
Importing this package imports nothing heavy; each module imports torch itself.
"""
