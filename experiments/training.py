"""PPO training of one agent with progress, learning curve, wandb and resumable checkpoints.

:func:`train_agent` runs stable-baselines3's ``learn`` on the batched env with one callback that

* draws a tqdm progress bar (steps, mean reward, ETA) and logs a progress line per checkpoint;
* records the learning curve per rollout (mean reward and its accuracy / robustness parts, SB3's
  ``train/*`` losses, LLM calls, tokens and cache hit rate) and logs it to wandb;
* counts, per template, the episodes and the reward they earned;
* saves a checkpoint every ``ppo.checkpoint_every`` steps: ``<kind>_<steps>.zip`` (SB3 weights and
  optimizer state) then ``<kind>_<steps>.json`` (steps done, curve, counts); the JSON is written
  last, so a checkpoint is complete exactly when its JSON exists.

A run that stops — killed, interrupted, or out of budget (:class:`~promptopt.errors.BudgetExceeded`)
— resumes from its newest complete checkpoint: a fresh agent gets the saved weights and step count
(``set_parameters``, no pickled objects are loaded) and learns the remaining steps; every answer
the ranker gave before the stop comes back from the cache.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptopt.errors import BudgetExceeded, ConfigError, PromptoptError, RankerError
from promptopt.experiments.rundir import write_json
from promptopt.experiments.tracking import Tracker
from promptopt.progress import progress_bar

logger = logging.getLogger(__name__)

KEEP_CHECKPOINTS = 2
"""Complete checkpoints kept per agent (older ones are deleted)."""


@dataclass
class TrainingState:
    """What a checkpoint restores besides the weights."""

    kind: str
    steps: int = 0
    curve: list[dict[str, float]] = field(default_factory=list)
    template_episodes: dict[str, int] = field(default_factory=dict)
    template_reward: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    llm: dict[str, float] = field(default_factory=dict)
    """Ranker spend of this agent's training, over every session: calls, hits, tokens, cost."""

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "steps": self.steps, "curve": self.curve,
                "template_episodes": self.template_episodes, "template_reward": self.template_reward,
                "seconds": self.seconds, "llm": self.llm}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TrainingState:
        return cls(kind=raw["kind"], steps=int(raw["steps"]), curve=list(raw["curve"]),
                   template_episodes=dict(raw["template_episodes"]),
                   template_reward=dict(raw["template_reward"]), seconds=float(raw.get("seconds", 0.0)),
                   llm=dict(raw.get("llm", {})))


def latest_checkpoint(
    folder: Path, kind: str, *, skip: Collection[Path] = ()
) -> tuple[Path, TrainingState] | None:
    """The newest complete checkpoint of agent ``kind`` (its zip and state), if any, other than ``skip``."""
    best: tuple[int, Path, Path] | None = None
    for state_path in folder.glob(f"{kind}_*.json"):
        suffix = state_path.stem[len(kind) + 1:]
        zip_path = state_path.with_suffix(".zip")
        if (suffix.isdigit() and zip_path.is_file() and zip_path not in skip
                and (best is None or int(suffix) > best[0])):
            best = (int(suffix), zip_path, state_path)
    if best is None:
        return None
    try:
        state = TrainingState.from_json(json.loads(best[2].read_text(encoding="utf-8")))
    except (json.JSONDecodeError, KeyError, ValueError):
        logger.warning("checkpoint state %s is unreadable; ignoring it", best[2])
        best[2].unlink(missing_ok=True)
        return latest_checkpoint(folder, kind, skip=skip)
    return best[1], state


def _restore(agent: Any, folder: Path, kind: str) -> tuple[Path, TrainingState] | None:
    """Load the newest checkpoint whose weights load into ``agent``; skip (and warn about) others.

    Raises:
        ConfigError: Checkpoints exist but none loads (damaged files, or a policy of another shape).
    """
    failed: list[tuple[Path, str]] = []
    while (found := latest_checkpoint(folder, kind, skip=[path for path, _ in failed])) is not None:
        try:
            agent.set_parameters(str(found[0]), exact_match=True)
            return found
        except Exception as exc:  # a damaged zip raises many kinds (ValueError, BadZipFile, EOFError ...)
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            logger.warning("checkpoint %s cannot be loaded (%s); trying an older one", found[0], reason)
            failed.append((found[0], reason))
    if failed:
        path, reason = failed[0]
        raise ConfigError(
            f"cannot resume from {path}: {reason}; if the policy changed since it was saved (overrides, "
            "another promptopt version), resume without the change; if the file is damaged, delete it "
            "(training then restarts from an older checkpoint or step 0, and cached answers are reused)"
        )
    return None


class RunStopped(PromptoptError):
    """A user error stopped training after its progress was saved; the message says how to go on."""


LLM_KEYS: tuple[str, ...] = ("calls", "hits", "tokens", "cost")


def ranker_stats(ranker: Any) -> dict[str, float]:
    """Spend so far of a :class:`~promptopt.llm.cache.CachedRanker` (zeros for an uncached one).

    ``calls``: requests sent to the backend (cache misses); ``hits``: answered by the cache.
    """
    stats = getattr(ranker, "stats", None)
    if stats is None:
        return dict.fromkeys(LLM_KEYS, 0)
    return {"calls": int(getattr(stats, "calls", 0)), "hits": int(getattr(stats, "hits", 0)),
            "tokens": int(getattr(stats, "tokens", 0)), "cost": float(getattr(stats, "cost", 0.0) or 0.0)}


def stats_delta(now: dict[str, float], base: dict[str, float], offset: dict[str, float]) -> dict[str, float]:
    """``offset + (now - base)`` per key, with the cache hit rate."""
    out = {k: offset.get(k, 0) + now.get(k, 0) - base.get(k, 0) for k in LLM_KEYS}
    seen = out["calls"] + out["hits"]
    out["cache_hit_rate"] = out["hits"] / seen if seen else 0.0
    return out


def _make_callback(
    state: TrainingState,
    *,
    total: int,
    checkpoint_every: int,
    checkpoint_dir: Path,
    tracker: Tracker,
    ranker: Any,
) -> Any:
    import copy

    from stable_baselines3.common.callbacks import BaseCallback

    class RunCallback(BaseCallback):
        """Progress, curve, per-template counts, wandb and checkpoints (see the module docstring).

        Checkpoints are taken at rollout boundaries only (the weights then match the steps
        counted), so a resumed run ends on exactly the step count of an uninterrupted one.
        """

        def _on_training_start(self) -> None:
            self.session_start = time.perf_counter()
            self.session_steps = state.steps
            self.seconds_before = state.seconds
            self.bar = progress_bar(total=total, initial=state.steps, unit="step", desc=f"PPO {state.kind}")
            self.next_checkpoint = (state.steps // checkpoint_every + 1) * checkpoint_every
            self.llm_base = ranker_stats(ranker)
            self.llm_offset = dict(state.llm)
            self.boundary = copy.deepcopy(state)
            self._reset_rollout()

        def _update_llm(self) -> dict[str, float]:
            state.llm = stats_delta(ranker_stats(ranker), self.llm_base, self.llm_offset)
            return state.llm

        def _reset_rollout(self) -> None:
            self.sums = {"reward": 0.0, "accuracy": 0.0, "robustness": 0.0}
            self.episodes = 0

        def _attach_losses(self) -> None:
            # SB3 fills ``train/*`` during the update that follows a rollout; attach them to it.
            if state.curve:
                values = self.model.logger.name_to_value
                state.curve[-1].update({k: float(v) for k, v in values.items() if k.startswith("train/")})

        def _on_rollout_start(self) -> None:
            self._attach_losses()
            state.steps = int(self.model.num_timesteps)
            state.seconds = self.seconds_before + time.perf_counter() - self.session_start
            self._update_llm()
            self.boundary = copy.deepcopy(state)
            if state.steps >= self.next_checkpoint:
                self.save_checkpoint()
                while self.next_checkpoint <= state.steps:
                    self.next_checkpoint += checkpoint_every

        def _on_step(self) -> bool:
            for info in self.locals.get("infos", ()):
                reward = info.get("reward")
                if not isinstance(reward, dict):
                    continue
                total_reward = float(reward.get("total", 0.0))
                self.episodes += 1
                self.sums["reward"] += total_reward
                self.sums["accuracy"] += float(reward.get("accuracy", 0.0))
                self.sums["robustness"] += float(reward.get("robustness", 0.0))
                tid = str(info.get("template_id", info.get("template")))
                state.template_episodes[tid] = state.template_episodes.get(tid, 0) + 1
                state.template_reward[tid] = state.template_reward.get(tid, 0.0) + total_reward
            self.bar.update(int(self.model.num_timesteps) - self.bar.n)
            if self.episodes:
                self.bar.set_postfix(reward=f"{self.sums['reward'] / self.episodes:.3f}", refresh=False)
            return True

        def _on_rollout_end(self) -> None:
            if not self.episodes:
                return
            llm = self._update_llm()
            row = {"step": int(self.model.num_timesteps),
                   **{k: v / self.episodes for k, v in self.sums.items()},
                   "llm_calls": llm["calls"], "llm_tokens": llm["tokens"],
                   "cache_hit_rate": llm["cache_hit_rate"]}
            state.curve.append(row)
            tracker.log({f"train/{state.kind}/reward": row["reward"],
                         f"reward/{state.kind}/accuracy": row["accuracy"],
                         f"reward/{state.kind}/robustness": row["robustness"],
                         "llm/calls": llm["calls"], "llm/tokens": llm["tokens"],
                         "llm/cache_hit_rate": row["cache_hit_rate"]})
            self._reset_rollout()

        def save_checkpoint(self, at: TrainingState | None = None) -> Path:
            """Save weights + ``at`` (default: the current rollout boundary) as a checkpoint."""
            snapshot = at or state
            zip_path = checkpoint_dir / f"{snapshot.kind}_{snapshot.steps}.zip"
            self.model.save(zip_path)
            write_json(zip_path.with_suffix(".json"), snapshot.to_json())
            done = snapshot.steps - self.session_steps
            elapsed = time.perf_counter() - self.session_start
            eta = elapsed / done * max(total - snapshot.steps, 0) if done > 0 else float("nan")
            last = snapshot.curve[-1]["reward"] if snapshot.curve else float("nan")
            logger.info("PPO %s: %d/%d steps, mean reward %.4f, %.0f s, ETA %.0f s; checkpoint %s",
                        snapshot.kind, snapshot.steps, total, last, snapshot.seconds, eta, zip_path.name)
            _prune(checkpoint_dir, snapshot.kind)
            return zip_path

        def save_boundary(self) -> Path:
            """After an interruption: the last rollout boundary (its weights are the current ones).

            The ranker spend is the current one: calls of the lost partial rollout were paid for
            (and are cached, so the resumed run gets them back for free).
            """
            self.boundary.llm = self._update_llm()
            return self.save_checkpoint(self.boundary)

        def _on_training_end(self) -> None:
            self._attach_losses()
            state.steps = int(self.model.num_timesteps)
            state.seconds = self.seconds_before + time.perf_counter() - self.session_start
            self._update_llm()
            self.bar.close()

    return RunCallback()


def _prune(folder: Path, kind: str) -> None:
    states = sorted(
        (int(p.stem[len(kind) + 1:]), p) for p in folder.glob(f"{kind}_*.json")
        if p.stem[len(kind) + 1:].isdigit()
    )
    for _steps, state_path in states[:-KEEP_CHECKPOINTS]:
        state_path.unlink(missing_ok=True)
        state_path.with_suffix(".zip").unlink(missing_ok=True)


def train_agent(
    kind: str,
    make_agent: Callable[[], Any],
    *,
    total_timesteps: int,
    checkpoint_every: int,
    checkpoint_dir: Path,
    output: Path,
    tracker: Tracker,
    ranker: Any,
    tb_log_name: str = "PPO",
) -> TrainingState:
    """Train (or finish training) one agent and save it to ``output``.

    Args:
        kind: ``"policy"`` or ``"mlp"``; names checkpoints and metric keys.
        make_agent: Builds a fresh, untrained agent on the training env.
        total_timesteps: Environment steps in total (including those done before a resume).
        checkpoint_every: Steps between checkpoints (>= 1).
        checkpoint_dir: Where checkpoints go.
        output: Final agent zip.
        tracker: wandb tracker.
        ranker: The (cached) ranker, for spend statistics.
        tb_log_name: TensorBoard run name, when the agent was made with a ``tensorboard_log``.

    Raises:
        BudgetExceeded: The ranker's budget ran out; a checkpoint was saved first and the message
            says how to continue.
        RankerError: The ranker failed after its retries; a checkpoint was saved first (and every
            answer received is in the cache), and the message says how to continue.
        RunStopped: Another user error (a damaged or full cache, a full disk) stopped training; a
            checkpoint was saved first when the disk allowed it.
    """
    if checkpoint_every < 1:
        raise ConfigError(f"ppo.checkpoint_every must be >= 1, got {checkpoint_every}")
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    agent = make_agent()
    found = _restore(agent, checkpoint_dir, kind)
    if found is not None:
        zip_path, state = found
        agent.num_timesteps = state.steps
        logger.info("resuming PPO %s from %s (%d/%d steps)", kind, zip_path.name, state.steps,
                    total_timesteps)
    else:
        state = TrainingState(kind=kind)
    callback = _make_callback(state, total=total_timesteps, checkpoint_every=checkpoint_every,
                              checkpoint_dir=checkpoint_dir, tracker=tracker, ranker=ranker)
    remaining = total_timesteps - state.steps
    if remaining > 0:
        try:
            agent.learn(total_timesteps=remaining, callback=callback, reset_num_timesteps=found is None,
                        progress_bar=False, tb_log_name=tb_log_name)
        except (PromptoptError, OSError, KeyboardInterrupt) as exc:
            # Any user error mid-training (budget, server, cache file, full disk, Ctrl-C) keeps the
            # progress: the last rollout boundary becomes a checkpoint before the error goes on.
            callback.bar.close()
            try:
                saved = f"checkpoint {callback.save_boundary()}"
            except (PromptoptError, OSError) as save_exc:
                saved = (f"the checkpoint could not be saved ({type(save_exc).__name__}: {save_exc}); "
                         "the last complete checkpoint is used")
            where = f"stopped PPO {kind} at {callback.boundary.steps}/{total_timesteps} steps, {saved}"
            run_dir = checkpoint_dir.parent
            if isinstance(exc, BudgetExceeded):
                raise BudgetExceeded(
                    f"{exc} — {where}; raise the budget and continue with `promptopt train --resume "
                    f"{run_dir} --budget.max_calls=N`"
                ) from None
            if isinstance(exc, RankerError):  # the server failed for good: keep the progress too
                raise RankerError(
                    f"{exc} — {where}; once the ranker answers again, continue with `promptopt train "
                    f"--resume {run_dir}`"
                ) from exc
            if isinstance(exc, KeyboardInterrupt):
                raise
            from promptopt.experiments.cli import error_line

            raise RunStopped(
                f"{error_line(exc)} — {where}; fix that and continue with `promptopt train --resume "
                f"{run_dir}` (cached answers are reused)"
            ) from exc
    agent.save(output)
    logger.info("PPO %s: %d steps in %.1f s -> %s", kind, state.steps, state.seconds, output)
    return state
