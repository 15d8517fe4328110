"""What a policy sees when an episode starts: the observation and the action mask.

Both depend only on the episode's context (the history its prompt is filled from), never on its
target or candidates, so neither builds the episode's tasks. The env (``envs.PromptRecEnv``) hands
out copies; the arrays cached here are read-only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from promptopt.episodes import EpisodeKey
from promptopt.profile import PROFILE_FEATURES, ProfileEncoder
from promptopt.tasks import UserContext

if TYPE_CHECKING:
    from promptopt.templates import CollaborativeHints, TemplateCatalog


class EpisodeObservations:
    """``[user index, *profile statistics]`` and the templates a context can fill, per episode.

    Args:
        profile: Encoder of the profile statistics.
        catalog: The template catalog (the action set).
        hints: Collaborative hints (``None``: templates that use them are masked).
        context: The episode's context by key (``None``: the user has no target there).
    """

    def __init__(
        self,
        profile: ProfileEncoder,
        catalog: TemplateCatalog,
        hints: CollaborativeHints | None,
        context: Callable[[EpisodeKey], UserContext | None],
    ) -> None:
        self.profile = profile
        self.catalog = catalog
        self.hints = hints
        self.context = context
        self.obs_dim = 1 + len(PROFILE_FEATURES)
        self.n_templates = len(catalog)
        self._obs: dict[EpisodeKey, np.ndarray] = {}
        self._masks: dict[EpisodeKey, np.ndarray] = {}

    def observation(self, key: EpisodeKey) -> np.ndarray:
        """The user index, then the profile of the context (zeros without one). Cached, read-only.

        Shapes:
            Returns ``(obs_dim,)`` float32.
        """
        obs = self._obs.get(key)
        if obs is None:
            ctx = self.context(key)
            obs = np.zeros(self.obs_dim, dtype=np.float32)
            obs[0] = key[0]
            if ctx is not None:
                obs[1:] = self.profile.encode(ctx)
            obs.setflags(write=False)
            self._obs[key] = obs
        return obs

    def action_mask(self, key: EpisodeKey) -> np.ndarray:
        """``(n_templates,)`` bool: templates the context can fill (all without one). Cached, read-only."""
        mask = self._masks.get(key)
        if mask is None:
            ctx = self.context(key)
            if ctx is None:
                mask = np.ones(self.n_templates, dtype=bool)
            else:
                hints = self.hints if self.hints is not None else False
                mask = np.asarray(self.catalog.valid_mask(ctx, hints=hints), dtype=bool)
            mask.setflags(write=False)
            self._masks[key] = mask
        return mask
