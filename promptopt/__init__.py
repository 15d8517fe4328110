"""promptopt: learn which hard prompt to send a frozen LLM so it recommends well, per user.

The core package imports none of gymnasium, stable_baselines3, torch_geometric or wandb; heavy
libraries are imported inside the functions that need them.
"""

__version__ = "0.1.0"
