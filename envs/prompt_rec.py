"""``PromptRecEnv``: pick a hard-prompt template for one user; the frozen ranker's accuracy is the reward."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import EnvSpec

from promptopt.errors import ConfigError
from promptopt.llm.types import Ranker
from promptopt.problem import Outcome, RecProblem
from promptopt.profile import PROFILE_FEATURES
from promptopt.runner import Episode

ActionSpaceKind = Literal["discrete", "multidiscrete"]


class PromptRecEnv(gym.Env[np.ndarray, Any]):
    """A contextual bandit: each episode is one user; the action is the prompt template to send.

    ## Description

    A frozen black-box ranker (an LLM behind an OpenAI-compatible API, a local transformers
    model, a text-embedding model or the simulator) orders a user's candidate items when given a
    prompt. The agent picks which template of the catalog fills that prompt for the user. The
    ranker is called on the user's ranking task (and its drift views), and the reward is the
    ranking accuracy plus robustness under drift. All tasks, prompts and rewards come from
    :class:`promptopt.problem.RecProblem`, so the env, the baselines and the evaluation agree.

    ## Action Space

    ``Discrete(n_templates)``: the template index in the catalog. With
    ``action_space="multidiscrete"`` (slot catalogs only): ``MultiDiscrete`` with one component per
    slot (``role``, ``history``, ``reasoning``, ``output``), each the option index; a combination
    that is not in the catalog is an invalid action.

    ## Observation Space

    ``Box(shape=(1 + 10,), dtype=float32)``:

    | Num | Observation       | Min | Max         | Meaning                                             |
    |-----|-------------------|-----|-------------|-----------------------------------------------------|
    | 0   | user index        | 0   | n_users - 1 | contiguous user index (policies embed it, e.g. LightGCN) |
    | 1   | history_length    | 0   | 1           | ``log(1 + n) / log(501)``                           |
    | 2   | genre_entropy     | 0   | 1           | genre entropy of the history / ``log(n_genres)``    |
    | 3   | top_genre_share   | 0   | 1           | share of the most frequent genre                    |
    | 4   | mean_rating       | 0   | 1           | ``(mean - 1) / 4`` (0.5 without ratings)            |
    | 5   | liked_share       | 0   | 1           | share of ratings >= 4 (0.5 without ratings)         |
    | 6   | taste_shift       | 0   | 1           | ``1 - cos(genres of last 10, genres before)``       |
    | 7   | activity_span     | 0   | 1           | ``log(1 + days) / log(3651)``                       |
    | 8   | mainstreamness    | 0   | 1           | mean log-popularity of the history (training counts)|
    | 9   | recent_activity   | 0   | 1           | share of the history in the last 10% of its span    |
    | 10  | has_attributes    | 0   | 1           | 1 when age / gender / occupation are known          |

    The statistics describe the history the episode's prompt is filled from (see
    :class:`promptopt.profile.ProfileEncoder`); nothing about the held-out target.

    ## Rewards

    ``total = (1 - w) * accuracy + w * robustness`` (:mod:`promptopt.reward`): accuracy is the
    configured metric (NDCG@10 by default) on the base task; robustness aggregates the metric over
    the base task and its drift views (mean - lambda * std, worst case or CVaR). Each view may be
    scored on B shuffled candidate orders and averaged. An invalid action (a template the user
    cannot fill, or a slot combination outside the catalog) earns 0 and calls nothing.

    With a ``baseline`` (a ranked list of default templates) the step's reward is paired: the
    chosen template's total minus the default's total on the same tasks, candidates and shown
    orders (the default is the first template of the list the user can fill; 0 when it is the
    chosen one). Its answer is cached like any other, so it is paid once per task. ``info["reward"]``
    keeps the chosen template's own breakdown; ``info["baseline"]`` holds the default's.

    ## Starting State

    A user drawn uniformly from the pool (``users``) with ``self.np_random``; ``options={"user": u}``
    picks the user. With ``train_targets > 1`` a training user's target is then drawn uniformly from
    :meth:`~promptopt.problem.RecProblem.training_rows` (its episode target and earlier ones).

    ## Episode End

    Terminated after one step (a contextual bandit); never truncated.

    ## Info

    ``reset``: ``user``, ``action_mask``. ``step``: ``user``, ``template`` (index),
    ``template_id``, ``template_name``, ``reward`` (total / accuracy / robustness / per_view),
    ``metrics`` (every metric of every view), ``period``, ``calls``, ``usage``
    (prompt / completion tokens), ``parse`` (found / duplicates / hallucinated / missing),
    ``invalid_action``, ``action_mask``.

    ``info`` depends only on the seed and the actions, never on the state of the answer cache, so
    Gymnasium's determinism check (``check_env``) holds on a cold cache. How many answers of the last
    step came from the cache is :attr:`last_step_cached` (the cache's totals: ``ranker.stats``).

    ## Arguments

    * ``problem``: the :class:`~promptopt.problem.RecProblem` (data, split, catalog, reward).
    * ``ranker``: any :class:`~promptopt.llm.types.Ranker` (wrap it in ``CachedRanker``).
    * ``users``: ``"train"``, ``"val"``, ``"test"`` or explicit user indices.
    * ``action_space``: ``"discrete"`` or ``"multidiscrete"``.
    * ``train_targets``: episode targets per training user (``env.train_targets``; 1 = its episode
      target only).
    * ``baseline``: ranked default templates of the paired reward (``env.reward_baseline:
      default``); ``None`` = the plain reward.
    * ``render_mode``: ``None``, ``"ansi"`` (a one-line description of the last step) or
      ``"rgb_array"`` (an image of the catalog, SB3's default for ``make_vec_env`` and video
      recorders: one cell per template, grey when the user cannot fill it, white when it can; the
      last step's template in a second row, from red (reward 0) to green (reward 1)).

    ## Version History

    * v0: Initial version.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}
    _spec: EnvSpec | None = None

    def __init__(
        self,
        problem: RecProblem,
        ranker: Ranker,
        *,
        users: str | Sequence[int] | np.ndarray = "train",
        action_space: ActionSpaceKind = "discrete",
        render_mode: str | None = None,
        train_targets: int = 1,
        baseline: Sequence[int] | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None, 'ansi' or 'rgb_array', got {render_mode!r}")
        if train_targets < 1:
            raise ValueError(f"train_targets must be >= 1, got {train_targets}")
        self.train_targets = int(train_targets)
        self.baseline = None if baseline is None else tuple(int(t) for t in baseline)
        if self.baseline is not None and (
            not self.baseline or any(not 0 <= t < problem.n_templates for t in self.baseline)
        ):
            raise ValueError(f"baseline must list template indices in 0..{problem.n_templates - 1}, "
                             f"got {list(self.baseline)}")
        self.problem = problem
        self.ranker = ranker
        self.render_mode = render_mode
        pool = problem.pool(users) if isinstance(users, str) else np.asarray(users, dtype=np.int64)
        if pool.size == 0:
            raise ValueError(f"the user pool {users!r} is empty: use a split with users")
        self.pool = np.asarray(pool, dtype=np.int64)
        n_users = problem.data.n_users
        bad = self.pool[(self.pool < 0) | (self.pool >= n_users)]
        if bad.size:
            raise ValueError(
                f"user index {int(bad[0])} is outside 0..{n_users - 1}: pass dataset user indices"
            )
        low = np.zeros(problem.obs_dim, dtype=np.float32)
        high = np.ones(problem.obs_dim, dtype=np.float32)
        high[0] = max(n_users - 1, 1)
        self.observation_space = spaces.Box(low=low, high=high, dtype=np.float32)
        catalog = problem.catalog
        self.action_kind = action_space
        if action_space == "discrete":
            self.action_space = spaces.Discrete(problem.n_templates)
            self._slot_vectors = None
        elif action_space == "multidiscrete":
            slots = catalog.slots
            if not slots:
                raise ConfigError(
                    "env.action_space 'multidiscrete' needs a slot catalog; this catalog lists "
                    "templates explicitly: use env.action_space: discrete"
                )
            self.action_space = spaces.MultiDiscrete([len(options) for options in slots.values()])
            self._slot_vectors = np.array(
                [catalog.slot_vector(i) for i in range(problem.n_templates)], dtype=np.int64
            )
            self._slot_sizes = [len(options) for options in slots.values()]
        else:
            raise ConfigError(f"env.action_space must be 'discrete' or 'multidiscrete', got {action_space!r}")
        assert len(PROFILE_FEATURES) + 1 == problem.obs_dim
        self._user: int | None = None
        self._row: int | None = None
        self._default: int | None = None
        self._obs = np.zeros(problem.obs_dim, dtype=np.float32)
        self._mask = np.ones(problem.n_templates, dtype=bool)
        self._last: str = ""
        self._last_step: tuple[int, float] | None = None  # (template, reward) of the last step
        self.last_step_cached = 0
        """Answers of the last step served from the answer cache (bookkeeping kept out of ``info``)."""

    # ------------------------------------------------------------------ spec
    # gymnasium.make stores its kwargs (this problem and ranker) in the spec, and wrappers deep-copy
    # the spec when it is read: copying a problem and a live ranker (SQLite, HTTP clients) fails
    # ("cannot pickle 'mappingproxy' object") and the spec becomes None. The kwargs are shared
    # services, so copies of the spec share them (gym.make(env.spec) builds an env on the same ones).
    @property  # type: ignore[override]
    def spec(self) -> EnvSpec | None:
        return self._spec

    @spec.setter
    def spec(self, value: EnvSpec | None) -> None:
        if value is not None and not isinstance(value.kwargs, _SharedKwargs):
            value = dataclasses.replace(value, kwargs=_SharedKwargs(value.kwargs))
        self._spec = value

    # ------------------------------------------------------------------ gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if options and "user" in options:
            self._user = int(options["user"])
            if not 0 <= self._user < self.problem.data.n_users:
                raise ValueError(f"options['user'] must be in 0..{self.problem.data.n_users - 1}, "
                                 f"got {options['user']!r}")
        else:
            # random() is 3x cheaper than integers(); floor(u * n) is uniform over the pool.
            self._user = int(self.pool[int(self.np_random.random() * self.pool.size)])
        self._row = None
        if self.train_targets > 1:
            rows = self.problem.training_rows(self._user, self.train_targets)
            self._row = rows[int(self.np_random.random() * len(rows))]
        # The problem caches both (read-only arrays); the env hands out copies.
        self._obs = self.problem.observation(self._user, row=self._row)
        self._mask = self.problem.action_mask(self._user, row=self._row)
        self._default = None
        if self.baseline is not None:
            self._default = next((t for t in self.baseline if self._mask[t]), None)
        self._last_step = None
        return self._obs.copy(), {"user": self._user, "action_mask": self._mask.copy()}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        user, template = self.plan(action)
        episodes = [] if template is None else [self.episode(template)]
        base = self.baseline_episode(template)
        if base is not None:
            episodes.append(base)
        ran = self.problem.run_episodes(episodes, self.ranker) if episodes else []
        outcome = ran[0] if template is not None else self.problem.invalid_outcome(user, -1)
        assert outcome is not None  # the episode row always exists
        return self.finish(outcome, ran[-1] if base is not None else None)

    def render(self) -> str | np.ndarray | None:
        if self.render_mode == "ansi":
            return self._last
        if self.render_mode == "rgb_array":
            return self._image()
        return None

    def _image(self, cell: int = 8) -> np.ndarray:
        """Shapes: ``(2 * cell, n_templates * cell, 3)`` uint8 (see ``render_mode`` above)."""
        n = self.problem.n_templates
        rows = np.zeros((2, n, 3), dtype=np.uint8)
        rows[0] = np.where(self._mask[:, None], 235, 90).astype(np.uint8)
        if self._last_step is not None and self._last_step[0] >= 0:
            template, reward = self._last_step
            r = float(np.clip(reward, 0.0, 1.0))
            rows[1, template] = (round(255 * (1 - r)), round(255 * r), 40)
        return np.repeat(np.repeat(rows, cell, axis=0), cell, axis=1)

    # ------------------------------------------------------------------ masks
    def action_masks(self) -> np.ndarray:
        """Valid actions for the current user (sb3-contrib MaskablePPO reads this).

        Discrete: ``(n_templates,)`` bool. MultiDiscrete: the per-slot option masks concatenated
        (an option is allowed when some valid template uses it; per-dimension masks cannot
        express the joint constraint, so an allowed combination may still be invalid).
        """
        if self._user is None:
            raise gym.error.ResetNeeded("call reset() before action_masks()")
        mask = self._mask
        if self._slot_vectors is None:
            return mask.copy()
        valid = self._slot_vectors[mask]
        parts = [np.isin(np.arange(size), valid[:, s]) for s, size in enumerate(self._slot_sizes)]
        return np.concatenate(parts)

    def expected_rewards(self, samples: int = 16) -> np.ndarray:
        """Monte-Carlo expected reward of every action for the current user (``nan`` = invalid).

        See :meth:`promptopt.problem.RecProblem.expected_rewards`; with the simulated ranker its
        argmax is the simulator's hidden best template. Costs ``samples`` calls per valid template.

        Shapes:
            Returns ``(n_templates,)`` float64 (template order, also for ``MultiDiscrete``).
        """
        if self._user is None:
            raise gym.error.ResetNeeded("call reset() before expected_rewards()")
        return self.problem.expected_rewards([self._user], self.ranker, samples=samples)[0]

    # ------------------------------------------------------------------ batched stepping
    def plan(self, action: Any) -> tuple[int, int | None]:
        """The current user and the template ``action`` names (``None``: not in the catalog)."""
        if self._user is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        if self._slot_vectors is None:
            if isinstance(action, (int, np.integer)):
                template = int(action)
            else:
                template = int(np.asarray(action).reshape(()))
            if not 0 <= template < self.problem.n_templates:
                raise ValueError(f"action must be in 0..{self.problem.n_templates - 1}, got {action!r}")
            return self._user, template
        found = self.problem.catalog.from_slot_vector(tuple(int(a) for a in np.asarray(action).ravel()))
        return self._user, None if found is None else int(found)

    def episode(self, template: int) -> Episode:
        """The episode of ``template`` for the current user and target."""
        assert self._user is not None
        return Episode(self._user, int(template), row=self._row)

    def baseline_episode(self, template: int | None) -> Episode | None:
        """The default template's episode of the paired reward (``None``: no baseline, or chosen)."""
        if self._default is None or template == self._default:
            return None
        return self.episode(self._default)

    def finish(
        self, outcome: Outcome, base: Outcome | None = None
    ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Turn the ranker's scored outcome of :meth:`plan` into the step's return values.

        ``base``: the default template's outcome of :meth:`baseline_episode` (``None`` when the
        default was chosen or there is no baseline).
        """
        user = self._user
        assert user is not None
        reward = float(outcome.reward.total)
        baseline: dict[str, Any] | None = None
        if self._default is not None:
            base_total = reward if base is None else float(base.reward.total)
            reward -= base_total
            baseline = {"template": self._default, "total": base_total}
        template_id = template_name = None
        if outcome.template >= 0:
            template = self.problem.catalog[outcome.template]
            template_id, template_name = template.id, template.name
        info: dict[str, Any] = {
            "user": user,
            "template": outcome.template,
            "template_id": template_id,
            "template_name": template_name,
            "reward": outcome.reward.to_dict(),
            "metrics": outcome.metrics,
            "period": outcome.period,
            "calls": outcome.calls,
            "usage": {"prompt_tokens": outcome.usage.prompt_tokens,
                      "completion_tokens": outcome.usage.completion_tokens},
            "parse": {"found": outcome.parse.found, "duplicates": outcome.parse.duplicates,
                      "hallucinated": outcome.parse.hallucinated, "missing": outcome.parse.missing,
                      "grounded": outcome.parse.grounded},
            "invalid_action": not outcome.valid,
            "action_mask": self._mask.copy(),
            "row": self._row,
        }
        if baseline is not None:
            info["baseline"] = baseline
        self.last_step_cached = outcome.cached
        self._last_step = (outcome.template, float(reward))
        if self.render_mode == "ansi":
            self._last = (f"user {self.problem.data.user_ids[user]}: template {template_id} -> "
                          f"reward {outcome.reward.total:.4f}")
        return self._obs.copy(), reward, True, False, info


class _SharedKwargs(dict):  # type: ignore[type-arg]
    """An env spec's kwargs: a deep copy of the spec copies this dict, not the objects in it."""

    def __deepcopy__(self, memo: dict[int, Any]) -> _SharedKwargs:
        return _SharedKwargs(self)
