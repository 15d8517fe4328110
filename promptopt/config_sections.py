"""The sections of the config tree: one frozen dataclass per YAML section, one docstring per field.

:mod:`promptopt.config` assembles them into :class:`~promptopt.config.ExperimentConfig` and loads,
overrides and serialises it; import sections from there. Every numeric field is bounded (the
aliases below), every enumerated one is a ``Literal``; unknown keys, ``nan`` and ``inf`` fail.
``promptopt.experiments.config_reference`` turns the field docstrings of both modules into the documented
reference.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass, field
from typing import Annotated, Literal

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen

from promptopt.errors import ConfigError
from promptopt.selector_names import DEFAULT_SELECTORS, SELECTOR_NAMES, unknown_selectors

# Unknown keys fail; nan and inf are refused for every float (no setting means anything with them).
_FORBID = {"extra": "forbid", "allow_inf_nan": False, "coerce_numbers_to_str": True}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")

# Ranges of the numeric settings. Every int and float field of a section uses one of these (or its
# own Annotated bounds): tests/experiments/test_config_fields.py checks that none is unbounded.
_MAX_INT = 2**31 - 1
"""Counts index int32/int64 arrays and torch tensors; nothing sensible is larger."""
Count = Annotated[int, Ge(1), Le(_MAX_INT)]
"""A positive count (steps, sizes, epochs)."""
NonNegCount = Annotated[int, Ge(0), Le(_MAX_INT)]
Seed = Annotated[int, Ge(0), Le(2**32 - 1)]
"""numpy's generators take seeds in [0, 2**32)."""
Share = Annotated[float, Ge(0.0), Le(1.0)]
"""A share or probability in [0, 1]."""
Positive = Annotated[float, Gt(0.0), Le(1e12)]
NonNegative = Annotated[float, Ge(0.0), Le(1e12)]
Name = Annotated[str, MinLen(1), MaxLen(4096)]
"""A non-empty string (a name or a path)."""
SynthSize = Annotated[int, Ge(2), Le(1_000_000)]
"""Synthetic users / items: the generator holds dense per-user arrays."""
DriftView = Literal["temporal", "dropout", "truncate", "popular_negatives", "new_items"]
"""The drift views of :mod:`promptopt.drift` (``DRIFT_VIEWS``)."""


def _section(cls: type) -> type:
    """Decorate a frozen dataclass config section that rejects unknown keys when validated."""
    cls.__pydantic_config__ = _FORBID  # type: ignore[attr-defined]
    return dataclass(frozen=True)(cls)


@_section
class SynthConfig:
    """Sizes of the seeded synthetic dataset (``data.format: synthetic``)."""

    n_users: SynthSize = 300
    """Number of users."""
    n_items: Annotated[int, Ge(30), Le(1_000_000)] = 400
    """Number of items."""
    n_genres: Annotated[int, Ge(2), Le(16)] = 12
    """Number of genres (of the generator's 16); each item has one to three."""
    mean_history: Annotated[int, Ge(8), Le(10_000)] = 40
    """Mean interactions per user (geometric-ish spread, at least 8)."""
    drift: Share = 0.5
    """Share of users whose genre taste changes during their history (0 = none)."""
    seed: Seed = 0
    """Seed of the generator (independent of the experiment seed so data stays fixed)."""
    start_days: Annotated[int, Ge(1), Le(36_500)] = 1095
    """Users start within this many days (a history spans about 3 x mean_history days): shorter puts
    most users on both sides of the drift time cut."""


@_section
class DataConfig:
    """Which dataset to load."""

    format: Literal[
        "synthetic", "movielens-100k", "movielens-1m", "movielens-latest", "lastfm", "generic"
    ] = "synthetic"
    """Layout of the files at ``path``; ``synthetic`` generates data instead."""
    path: Name | None = None
    """Folder holding the dataset's own files (not used for ``synthetic``)."""
    synthetic: SynthConfig = field(default_factory=SynthConfig)
    """Generator settings for ``format: synthetic``."""
    title_column: Name = "title"
    """Generic layout: column of ``items.csv`` holding the title."""
    genres_column: Name | None = "genres"
    """Generic layout: column of ``items.csv`` with ``|``-separated genres (None = none)."""


@_section
class SplitConfig:
    """Users, targets, candidates and the drift protocol."""

    val_fraction: Annotated[float, Ge(0.0), Lt(1.0)] = 0.1
    """Share of users for validation (LightGCN early stopping)."""
    test_fraction: Annotated[float, Ge(0.0), Lt(1.0)] = 0.2
    """Share of users held out for testing."""
    min_history: Annotated[int, Ge(2), Le(_MAX_INT)] = 5
    """Users with fewer interactions are not used (a target needs a history before it)."""
    max_users: Annotated[int, Ge(3), Le(_MAX_INT)] | None = None
    """Use at most this many users (seeded subsample); None = all."""
    n_targets: Annotated[int, Ge(1), Le(1000)] = 3
    """Targets per user: the last interaction plus ``n_targets - 1`` earlier ones."""
    n_negatives: Annotated[int, Ge(1), Le(10_000)] = 19
    """Negatives per task (19 gives 20 candidates, as in LLMRank); fewer than the catalog's items."""
    negatives: Literal["uniform", "popularity"] = "uniform"
    """How base-view negatives are drawn."""
    drift_quantile: Annotated[float, Gt(0.0), Lt(1.0)] = 0.8
    """Global time cut at this quantile of all timestamps: source period before, target after."""
    protocol: Literal["leave_last", "deploy"] = "leave_last"
    """Which targets episodes use (docs/env.md, "Protocols"): ``leave_last`` (training users their
    second-to-last interaction, the others their last, whatever its date) or ``deploy`` (whatever
    learns sees only interactions before the time cut; test users are scored on their first one
    from it on)."""

    def __post_init__(self) -> None:
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ConfigError(
                f"split.val_fraction + split.test_fraction must be < 1 (training users are the rest), "
                f"got {self.val_fraction} + {self.test_fraction}"
            )


@_section
class TemplatesConfig:
    """The action catalog."""

    catalog: Name = "movies"
    """A built-in catalog name (``movies``, ``music``) or the path of a catalog YAML."""
    include: tuple[Name, ...] = ()
    """Keep only templates whose id matches one of these glob patterns (empty = all)."""
    max_history: Annotated[int, Ge(1), Le(10_000)] = 50
    """Upper bound on history items any template lists."""


@_section
class RankerConfig:
    """The frozen black box and its decoding parameters."""

    backend: Literal["embedding", "openai", "hf", "simulated", "replay"] = "embedding"
    """Which backend ranks the candidates (``replay``: answers logged in an answer cache, no model call)."""
    model: Name = "all-MiniLM-L6-v2"
    """Model name (API model id, hub id or local path); the embedded default is MiniLM."""
    base_url: Name | None = None
    """OpenAI-compatible server URL (None = the official API). Keep credentials out of it: any user
    name, password or key-like query value is redacted wherever the URL is stored or logged."""
    api_key_env: Name = "OPENAI_API_KEY"
    """Name of the environment variable holding the API key."""
    embedding_api: bool = False
    """embedding backend: call an OpenAI-compatible /v1/embeddings endpoint instead of a local model."""
    temperature: Annotated[float, Ge(0.0), Le(100.0)] = 0.0
    """Sampling temperature (0 = greedy)."""
    seed: Seed | None = 0
    """Decoding seed sent to the server where supported."""
    max_tokens: Annotated[int, Ge(1), Le(1_000_000)] = 256
    """Completion token limit."""
    concurrency: Annotated[int, Ge(1), Le(4096)] = 16
    """Requests in flight at once (API backends)."""
    timeout_s: Annotated[float, Gt(0.0), Le(86_400.0)] = 60.0
    """Wall-clock limit of one request attempt: connect, send and the whole answer (then retried)."""
    max_retries: Annotated[int, Ge(0), Le(100)] = 5
    """Retries on 429 / 5xx / timeouts, with exponential backoff honouring retry-after."""
    price_prompt_per_1m: NonNegative = 0.0
    """Money per million prompt tokens (0 = unknown)."""
    price_completion_per_1m: NonNegative = 0.0
    """Money per million completion tokens."""
    hf_mode: Literal["score", "generate"] = "score"
    """hf backend: candidate log-likelihood scoring or free generation then parsing."""
    api_mode: Literal["chat", "score"] = "chat"
    """openai backend: chat completions then parsing, or label log-likelihoods from /v1/completions
    (echo + logprobs; falls back to chat, saying so, where the server cannot)."""
    tokenizer: Name | None = None
    """openai score mode: render prompts with this model's chat template (packaged model, .gguf file,
    tokenizer folder or cached hub id); None = the plain prompt."""
    gguf_file: Name | None = None
    """hf: the .gguf file inside the folder ranker.model (ranker.model may also be the .gguf file itself,
    or a packaged model: smollm2-135m-instruct)."""
    length_normalize: Literal["none", "titles", "all"] = "titles"
    """Score modes: whose label log-probabilities are averaged over their tokens instead of summed."""
    grounding: Literal["none", "embedding"] = "none"
    """Generation: ground answer items that match no candidate to the nearest unplaced one by embedding
    similarity (BIGRec's second step), counted as parse.grounded; none = they count as hallucinated."""
    grounding_model: Name = "all-MiniLM-L6-v2"
    """grounding: the sentence-transformers model (the default is the packaged MiniLM)."""
    prompt_style: Literal["chat", "plain"] = "chat"
    """hf: the tokenizer's chat template, or the plain prompt (what a completions endpoint scores)."""
    device: Name = "auto"
    """hf / embedding: torch device: auto (CUDA when present), cpu, cuda, cuda:N or mps."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """hf: torch dtype (auto = bfloat16 on CUDA; on CPU only where a start-up probe shows it faster)."""
    batch_size: Annotated[int, Ge(1), Le(1_000_000)] = 32
    """Local backends: requests per forward pass."""
    noise: Annotated[float, Ge(0.0), Le(1000.0)] = 0.05
    """simulated backend: noise of the ranking quality."""
    drift_share: Share = 0.0
    """simulated backend: share of users whose preferences drift at the time cut (``split.drift_quantile``):
    from it on their best template changes and every template loses drift_strength x its drift-view
    fragility (planted drift, :mod:`promptopt.llm.simulated`); 0 = the same preferences in both periods."""
    drift_strength: Annotated[float, Ge(0.0), Le(100.0)] = 1.0
    """simulated backend, planted drift: multiple of each template's drift-view fragility a drifted user's
    target-period request loses (0 = only the best template changes)."""
    replay_cache: Name | None = None
    """replay backend: the answer cache holding the logged answers (None = ``cache.path``)."""
    replay_identity: Name | None = None
    """replay backend: identity (JSON) of the logged backend to replay, as ``promptopt cache stats``
    lists it (None = the file's only identity)."""

    def __post_init__(self) -> None:
        if not _DEVICE.fullmatch(self.device):
            raise ConfigError(f"ranker.device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        if self.base_url is not None and not re.match(r"(?i)https?://[^/\s]", self.base_url):
            from promptopt.redact import redact_url

            raise ConfigError(f"ranker.base_url must be an http:// or https:// URL, got "
                              f"{redact_url(self.base_url)!r}")
        # A key pasted here by mistake would be echoed by "variable ... is not set": refuse it unseen.
        if not isinstance(self.api_key_env, str) or not _ENV_NAME.fullmatch(self.api_key_env):
            raise ConfigError(
                "ranker.api_key_env must be the name of an environment variable (letters, digits and '_', "
                "e.g. OPENAI_API_KEY), not the key itself; the value given is not shown"
            )


@_section
class CacheConfig:
    """The persistent answer cache."""

    enabled: bool = True
    """Wrap the ranker in the SQLite cache."""
    path: Name = "runs/cache.sqlite"
    """SQLite file shared by runs (answers are keyed by ranker identity + request)."""


@_section
class BudgetConfig:
    """Spending caps of a run (None = no cap)."""

    max_calls: NonNegCount | None = None
    """Uncached ranker calls of the whole run (every phase, every resume)."""
    max_tokens: Annotated[int, Ge(0)] | None = None
    """Prompt + completion tokens of the run's uncached calls."""
    max_cost: NonNegative | None = None
    """Money of the run's uncached calls, from the ranker's price table (which must be set)."""


DRIFT_VIEWS: tuple[str, ...] = typing.get_args(DriftView)
"""Names of the drift views ``reward.views`` may select; :mod:`promptopt.drift` builds each."""


@_section
class RewardConfig:
    """Accuracy plus robustness under drift."""

    metric: Name = "ndcg@10"
    """Accuracy metric: ndcg@k, hit@k, recall@k or mrr."""
    robust_weight: Share = 0.0
    """w in total = (1 - w) * accuracy + w * robustness (0 = accuracy only)."""
    views: tuple[DriftView, ...] = ("temporal", "dropout", "popular_negatives")
    """Drift views scored besides the base view when robust_weight > 0."""
    aggregate: Literal["mean_std", "worst", "cvar"] = "mean_std"
    """How per-view scores become the robustness term."""
    std_penalty: Annotated[float, Ge(0.0), Le(1000.0)] = 1.0
    """lambda of mean - lambda * std."""
    cvar_alpha: Annotated[float, Gt(0.0), Le(1.0)] = 0.5
    """CVaR: mean of the worst alpha share of views."""
    dropout: Annotated[float, Ge(0.0), Lt(1.0)] = 0.3
    """History-dropout view: share of history items removed."""
    bootstrap: Annotated[int, Ge(1), Le(1000)] = 1
    """Shuffled candidate orders per view, averaged (position-bias control)."""
    fairness_weight: Annotated[float, Ge(0.0), Le(100.0)] = 0.0
    """lambda of the fairness-aware reward: total -= lambda * (1 - mean list similarity of the base ranking
    to its counterfactual copies stating sensitive attributes of ``fairness.attributes``); 0 = off."""
    fairness_values: Annotated[int, Ge(1), Le(1000)] = 2
    """Fairness-aware reward: attribute values drawn per episode (one extra ranker request each)."""
    fairness_metric: Literal["jaccard", "serp", "prag"] = "serp"
    """Fairness-aware reward: the list similarity (FaiRLLM's Jaccard@K, SERP*@K, PRAG*@K; K of ``metric``)."""

    def __post_init__(self) -> None:
        # Checked here, so every command (train, evaluate, study, estimate-cost) rejects the same
        # values when the config loads, before anything is paid for. Imported here: loading a config
        # needs no numpy (``promptopt --help``); metrics imports nothing of promptopt (no cycle).
        from promptopt.metrics import metric_fn

        try:
            metric_fn(self.metric)
        except ValueError as exc:
            raise ConfigError(f"reward.metric: {exc}") from None
        unknown = [v for v in self.views if v not in DRIFT_VIEWS]
        if unknown:
            raise ConfigError(
                f"reward.views: unknown drift view {unknown[0]!r}; use any of {', '.join(DRIFT_VIEWS)}"
            )
        if len(set(self.views)) != len(self.views):
            raise ConfigError(f"reward.views must name distinct drift views, got {list(self.views)}")
        if not 0.0 <= self.robust_weight <= 1.0:
            raise ConfigError(f"reward.robust_weight must be in [0, 1], got {self.robust_weight}")
        if self.bootstrap < 1:
            raise ConfigError(f"reward.bootstrap must be >= 1, got {self.bootstrap}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"reward.dropout must be in [0, 1), got {self.dropout}")
        if not self.std_penalty >= 0:
            raise ConfigError(f"reward.std_penalty must be >= 0, got {self.std_penalty}")
        if not 0.0 < self.cvar_alpha <= 1.0:
            raise ConfigError(f"reward.cvar_alpha must be in (0, 1], got {self.cvar_alpha}")
        if self.aggregate not in ("mean_std", "worst", "cvar"):
            raise ConfigError(f"reward.aggregate must be mean_std, worst or cvar, got {self.aggregate!r}")
        if self.robust_weight > 0 and not self.views:
            raise ConfigError("reward.robust_weight > 0 needs at least one drift view in reward.views "
                              f"({', '.join(DRIFT_VIEWS)})")


@_section
class FairnessConfig:
    """The fairness audit (``promptopt audit fairness RUN``); its attributes also feed the fairness reward."""

    attributes: Name = "fairllm"
    """Sensitive attributes and the sentence stating each value: a built-in set (fairllm) or a YAML path."""
    only: tuple[Name, ...] = ()
    """Audit only these attributes of the set (empty = all)."""
    max_values: Annotated[int, Ge(2), Le(1000)] | None = None
    """Audit at most the first N values of each attribute (None = all)."""
    users: Count | None = 50
    """Evaluation users audited (a seeded sample; None = all)."""
    templates: Literal["chosen", "all"] = "chosen"
    """Audit each user's exported choice (prompts.json) or every template the user can fill."""
    k: Annotated[int, Ge(1), Le(1000)] = 10
    """Cut-off K of Jaccard@K, SERP*@K and PRAG*@K."""
    flag_metric: Literal["jaccard", "serp", "prag"] = "serp"
    """The similarity whose SNSR flags an attribute when it exceeds its noise level."""
    alpha: Annotated[float, Gt(0.0), Lt(1.0)] = 0.05
    """Family-wise level of the flags: each attribute is tested at alpha / number of attributes."""
    n_permutations: Annotated[int, Ge(99), Le(1_000_000)] = 2000
    """Label-shuffled copies behind each attribute's noise level."""
    group_attributes: tuple[Name, ...] = ()
    """The dataset's user attributes whose groups are compared (empty = every one the data has)."""
    group_selectors: Annotated[tuple[Name, ...], MinLen(1)] = ("random", "best_fixed", "policy")
    """Selectors whose per-group NDCG@10 is compared (answers come from the run's cache)."""
    min_group_users: Annotated[int, Ge(2), Le(_MAX_INT)] = 10
    """Groups with fewer evaluation users are listed but left out of the gaps."""
    age_bins: Annotated[tuple[Annotated[int, Ge(0), Le(200)], ...], MaxLen(32)] = (18, 25, 35, 45, 50, 56)
    """Numeric ages are grouped at these lower bounds (MovieLens-1M's brackets)."""
    batch: Annotated[int, Ge(1), Le(1_000_000)] = 256
    """Audit requests per ranker call (answers are cached after each call)."""

    def __post_init__(self) -> None:
        unknown = unknown_selectors(self.group_selectors)
        if unknown:
            raise ConfigError(f"fairness.group_selectors: unknown selector {unknown[0]!r}; use any of "
                              f"{', '.join(SELECTOR_NAMES)}")
        if any(b >= a for a, b in zip(self.age_bins[1:], self.age_bins)):
            raise ConfigError(f"fairness.age_bins must be strictly increasing, got {list(self.age_bins)}")


@_section
class EnvConfig:
    """The Gymnasium environment."""

    action_space: Literal["discrete", "multidiscrete"] = "discrete"
    """One action per template, or one per slot."""
    n_envs: Annotated[int, Ge(1), Le(4096)] = 8
    """Sub-environments of the batched vector env (one ranker call per step for all)."""
    mask_invalid: bool = True
    """Expose action masks for templates a user cannot fill."""
    reward_baseline: Literal["none", "default"] = "none"
    """PPO's reward: the metric (``none``), or the metric minus the default template's metric on the
    same tasks, candidates and shown order (``default``: a paired baseline; the default's answer is
    cached, so it is paid once per task). The default is ranked by the ``default_scan_users`` scan."""
    train_targets: Annotated[int, Ge(1), Le(1000)] = 1
    """Episode targets per training user: its episode target (the second-to-last interaction) and up
    to ``train_targets - 1`` other targets of the split (``split.n_targets``), nearest first (the last
    interaction before earlier ones, unless the reward's temporal drift view needs it)."""
    default_scan_users: Count = 64
    """Training users (a seeded sample) scanned with every template to rank the default template of
    ``reward_baseline: default`` and ``policy.warm_start``; their calls count in training's spend."""


@_section
class PolicyConfig:
    """The LightGCN + MLP policy."""

    kind: Literal["lightgcn_mlp", "mlp"] = "lightgcn_mlp"
    """Graph embedding + profile statistics, or profile statistics only (the ablation)."""
    embedding_dim: Annotated[int, Ge(1), Le(16_384)] = 64
    """LightGCN embedding size."""
    n_layers: Annotated[int, Ge(1), Le(64)] = 2
    """LightGCN propagation layers."""
    bpr_epochs: Annotated[int, Ge(1), Le(1_000_000)] = 200
    """Maximum BPR pretraining epochs."""
    bpr_lr: Annotated[float, Gt(0.0), Le(100.0)] = 0.01
    """BPR learning rate."""
    bpr_batch_size: Count = 2048
    """BPR batch size (positive interactions)."""
    bpr_patience: Annotated[int, Ge(1), Le(1_000_000)] = 10
    """Early stopping: epochs without a better validation recall@20."""
    finetune_graph: bool = False
    """Back-propagate PPO losses into the LightGCN embeddings."""
    hidden: Annotated[tuple[Annotated[int, Ge(1), Le(65_536)], ...], MinLen(1), MaxLen(64)] = (64,)
    """MLP layers of the features extractor (at least one)."""
    pi: Annotated[tuple[Annotated[int, Ge(1), Le(65_536)], ...], MaxLen(64)] = (64,)
    """Actor head layers."""
    vf: Annotated[tuple[Annotated[int, Ge(1), Le(65_536)], ...], MaxLen(64)] = (64,)
    """Critic head layers."""
    maskable: bool = True
    """Use sb3-contrib MaskablePPO with the env's action masks."""
    warm_start: Annotated[float, Ge(0.0), Lt(1.0)] = 0.0
    """Initial probability of the default template (ranked by the ``env.default_scan_users`` scan):
    the untrained policy already prefers it, so a short budget starts from the default; 0 = SB3's
    near-uniform start."""


@_section
class PPOConfig:
    """stable-baselines3 PPO hyper-parameters, by their SB3 names."""

    total_timesteps: Count = 4096
    """Environment steps (one user each)."""
    learning_rate: Annotated[float, Gt(0.0), Le(10.0)] = 3e-4
    """Adam step size."""
    n_steps: Annotated[int, Ge(1), Le(1_000_000)] = 64
    """Steps per sub-environment per rollout."""
    batch_size: Annotated[int, Ge(2), Le(_MAX_INT)] = 64
    """Minibatch size (SB3 normalises advantages per minibatch, so at least 2)."""
    n_epochs: Annotated[int, Ge(1), Le(10_000)] = 10
    """Passes over each rollout."""
    gamma: Share = 0.0
    """Discount; episodes are one step long, so it does not matter."""
    gae_lambda: Share = 0.95
    """GAE lambda."""
    clip_range: Annotated[float, Gt(0.0), Le(100.0)] = 0.2
    """PPO clip range."""
    ent_coef: Annotated[float, Ge(0.0), Le(100.0)] = 0.01
    """Entropy bonus."""
    vf_coef: Annotated[float, Ge(0.0), Le(100.0)] = 0.5
    """Critic loss weight."""
    max_grad_norm: Annotated[float, Gt(0.0), Le(1e6)] = 0.5
    """Gradient clipping."""
    checkpoint_every: Count = 1024
    """Save a resumable checkpoint every this many steps."""


@_section
class EvalConfig:
    """The evaluation protocol."""

    split: Literal["val", "test"] = "test"
    """Users the selectors are compared on. Tuning (sweeps) uses ``val``; ``test`` users are scored
    once, at the end, and every reported number is keyed by the split it comes from."""
    selectors: Annotated[tuple[Name, ...], MinLen(1)] = DEFAULT_SELECTORS
    """Selectors to compare (names as in the report); ``advantage`` only when named."""
    n_bootstrap: Annotated[int, Ge(1), Le(1_000_000)] = 1000
    """Bootstrap resamples for intervals."""
    confidence: Annotated[float, Gt(0.0), Lt(1.0)] = 0.95
    """Interval coverage."""
    interval: Literal["percentile", "bca"] = "percentile"
    """Bootstrap interval (scipy.stats.bootstrap): percentile, or bca (bias-corrected and accelerated,
    better coverage for skewed per-user metrics)."""
    epsilon: Share = 0.1
    """epsilon-greedy exploration rate."""
    linucb_alpha: Annotated[float, Ge(0.0), Le(1e6)] = 1.0
    """LinUCB exploration width."""
    bandit_steps: Count | None = None
    """Training episodes of the epsilon-greedy and LinUCB baselines (None = ppo.total_timesteps)."""
    fixed_users: Count | None = None
    """Training users every template is scored on to pick the best fixed template (None = all)."""
    periods: bool = True
    """Also compare selectors on each user's source-period and drifted target-period target."""

    def __post_init__(self) -> None:
        unknown = unknown_selectors(self.selectors)
        if unknown:
            raise ConfigError(f"eval.selectors: unknown selector {unknown[0]!r}; use any of "
                              f"{', '.join(SELECTOR_NAMES)}")


GATE_THRESHOLDS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5)
"""The default candidate margins of the safe policy's gate (``gate.thresholds``)."""


@_section
class GateConfig:
    """The safe policy (``policy``): the best fixed template, and the learned choice only where a gate
    validated on validation users says it pays (``promptopt.safe_policy``)."""

    thresholds: Annotated[tuple[Annotated[float, Ge(0.0), Le(1.0)], ...], MinLen(1)] = GATE_THRESHOLDS
    """Candidate probability margins of the policy's choice over the default; the rule keeps the
    one with the largest validated gain whose bootstrap lower bound is > 0 (none: never deviate)."""
    metric: Literal["reward", "ndcg@1", "ndcg@5", "ndcg@10", "hit@1", "hit@5", "hit@10", "mrr"] = "reward"
    """What a validated gain is measured in: the run's reward total or a base-view metric."""
    confidence: Annotated[float, Gt(0.0), Lt(1.0)] = 0.95
    """Family-wise coverage of the lower bounds that must be > 0: each of the K thresholds is tested
    at 1 - (1 - confidence) / K (Bonferroni), since the rule keeps the best of them."""
    val_users: Count | None = None
    """Validation users the gate is validated on (a seeded sample; None = all)."""


@_section
class ExportConfig:
    """What the prompt book (prompts.json) holds."""

    users: Literal["all", "test"] = "all"
    """Users listed with their chosen template: every user of the split, or the test users only."""
    prompts: bool = True
    """Store each listed user's filled prompt (the largest part of the file)."""


@_section
class TrackingConfig:
    """wandb logging."""

    wandb: bool = True
    """Log to wandb (offline unless mode says otherwise)."""
    mode: Literal["offline", "online", "disabled"] = "offline"
    """wandb mode; online needs WANDB_API_KEY in the environment."""
    project: Name = "promptopt"
    """wandb project."""
    entity: Name | None = None
    """wandb entity (team); None = default."""
    tensorboard_dir: Name | None = None
    """SB3's tensorboard_log: PPO's TensorBoard event files go to DIR/<run directory name>-<agent>_1
    (None = none; needs the tensorboard package, extra tracking); view with tensorboard --logdir DIR."""
