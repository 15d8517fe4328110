"""stable-baselines3 features extractors: LightGCN user embedding + profile statistics -> MLP.

SB3 observations stay flat: the env's ``Box`` observation is ``[user index, *profile stats]``
(:meth:`promptopt.problem.RecProblem.observation`). The graph lives inside the extractor:

* :class:`LightGCNExtractor` looks the user up in LightGCN embeddings — a frozen buffer computed
  once by :func:`promptopt.policies.lightgcn.pretrain_lightgcn` (no propagation per step), or, with
  ``finetune_graph=True``, the live LightGCN propagated over the training graph so PPO's
  gradients reach the node embeddings — concatenates the profile statistics, and applies an MLP.
* :class:`ProfileExtractor` is the ablation without the graph: profile statistics -> MLP.

Both keep their constructor arguments small and serialisable (sizes and a file path), and hold
embeddings and graph as registered buffers, so a saved SB3 zip restores identical actions
without the embeddings file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from promptopt.policies.graph import InteractionGraph
from promptopt.policies.lightgcn import LightGCNEmbeddings, make_lightgcn

logger = logging.getLogger(__name__)


def _mlp(in_dim: int, hidden: Sequence[int]) -> tuple[nn.Module, int]:
    """``Linear -> ReLU`` per hidden size; returns the module and its output size."""
    layers: list[nn.Module] = []
    size = in_dim
    for width in hidden:
        if int(width) < 1:
            raise ValueError(f"hidden layer sizes must be >= 1, got {list(hidden)}")
        layers += [nn.Linear(size, int(width)), nn.ReLU()]
        size = int(width)
    return (nn.Sequential(*layers) if layers else nn.Identity()), size


class ProfileNormalizer(nn.Module):
    """Standardises the profile statistics with fixed training-pool moments: ``(x - mean) / std``.

    The statistics live in ``[0, 1]`` but several crowd into a narrow band (a taste shift is
    rarely above 0.3); standardising lets a small MLP separate users with ordinary step sizes.
    The moments are buffers (saved with the model); without them the module is the identity.

    Shapes:
        forward: ``(batch, n_profile) -> (batch, n_profile)``.
    """

    def __init__(self, n_profile: int, mean: Sequence[float] | None, std: Sequence[float] | None) -> None:
        super().__init__()
        if (mean is None) != (std is None):
            raise ValueError("give both profile_mean and profile_std, or neither")
        mean_t = torch.zeros(n_profile) if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        std_t = torch.ones(n_profile) if std is None else torch.as_tensor(std, dtype=torch.float32)
        if mean_t.shape != (n_profile,) or std_t.shape != (n_profile,):
            raise ValueError(
                f"profile_mean and profile_std need {n_profile} values each (one per profile statistic), "
                f"got {tuple(mean_t.shape)} and {tuple(std_t.shape)}"
            )
        self.register_buffer("mean", mean_t.clone())
        self.register_buffer("scale", 1.0 / std_t.clamp(min=1e-3))

    def forward(self, profile: torch.Tensor) -> torch.Tensor:
        return (profile - self.mean) * self.scale


def _profile_size(observation_space: spaces.Space) -> int:
    if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
        raise ValueError(
            f"the policy expects a flat Box observation [user index, *profile stats], got {observation_space}"
        )
    if observation_space.shape[0] < 2:
        raise ValueError(f"observation has {observation_space.shape[0]} entries; expected >= 2")
    return int(observation_space.shape[0]) - 1


class ProfileExtractor(BaseFeaturesExtractor):
    """Profile statistics only (``obs[:, 1:]``) -> MLP: the no-graph ablation.

    Args:
        observation_space: The env's ``Box((1 + n_profile,))``.
        hidden: MLP layer sizes; ``features_dim`` is the last one (the input size when empty).
        profile_mean: Mean of each profile statistic over the training users (``None`` = 0).
        profile_std: Their standard deviations (``None`` = 1); see :class:`ProfileNormalizer`.

    Shapes:
        forward: ``(batch, 1 + n_profile) -> (batch, features_dim)``.
    """

    def __init__(
        self,
        observation_space: spaces.Box,
        hidden: Sequence[int] = (64,),
        profile_mean: Sequence[float] | None = None,
        profile_std: Sequence[float] | None = None,
    ) -> None:
        n_profile = _profile_size(observation_space)
        mlp, out = _mlp(n_profile, hidden)
        super().__init__(observation_space, out)
        self.profile = ProfileNormalizer(n_profile, profile_mean, profile_std)
        self.mlp = mlp

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.profile(observations[:, 1:]))


class LightGCNExtractor(BaseFeaturesExtractor):
    """User embedding (LightGCN) ++ profile statistics -> MLP.

    ``features = MLP(([e_u, obs[:, 1:]] - shift) * scale)`` where ``u = round(obs[:, 0])``, ``e_u``
    is the user's LightGCN embedding and the fixed ``shift`` / ``scale`` standardise each input:
    the embedding dimensions with their mean and standard deviation over all users (computed once
    from the pretrained embeddings), the profile statistics with the training users' moments.
    BPR embeddings come in any scale; this puts them on the profile statistics' scale at no
    per-step cost beyond one subtraction and one multiplication.

    Args:
        observation_space: The env's ``Box((1 + n_profile,))``.
        n_users: Users in the embedding table (the dataset's user count).
        embedding_dim: LightGCN embedding size.
        hidden: MLP layer sizes; ``features_dim`` is the last one.
        embeddings_path: File written by :meth:`LightGCNEmbeddings.save`, read at construction.
            When it is ``None`` or missing, the buffers start at zero and must be restored from a
            saved model's state (what ``PPO.load`` does); :func:`promptopt.policies.agent.make_agent`
            refuses to train without the file.
        finetune_graph: Propagate the live LightGCN on every forward pass so PPO trains the
            node embeddings, instead of reading the frozen buffer.
        n_items: Item nodes (fine-tuning only).
        n_layers: LightGCN layers (fine-tuning only).
        n_edges: Training edges (fine-tuning only; sizes the graph buffer).
        profile_mean: Mean of each profile statistic over the training users (``None`` = 0).
        profile_std: Their standard deviations (``None`` = 1); see :class:`ProfileNormalizer`.

    Shapes:
        forward: ``(batch, 1 + n_profile) -> (batch, features_dim)``.

    Raises:
        ValueError: The file's sizes differ from the arguments, or an observation names a user
            outside ``0..n_users-1``.
    """

    def __init__(
        self,
        observation_space: spaces.Box,
        n_users: int,
        embedding_dim: int = 64,
        hidden: Sequence[int] = (64,),
        embeddings_path: str | None = None,
        finetune_graph: bool = False,
        n_items: int = 0,
        n_layers: int = 2,
        n_edges: int = 0,
        profile_mean: Sequence[float] | None = None,
        profile_std: Sequence[float] | None = None,
    ) -> None:
        n_profile = _profile_size(observation_space)
        mlp, out = _mlp(embedding_dim + n_profile, hidden)
        super().__init__(observation_space, out)
        self.n_users = int(n_users)
        self.finetune_graph = bool(finetune_graph)
        profile = ProfileNormalizer(n_profile, profile_mean, profile_std)
        self.register_buffer("shift", torch.cat([torch.zeros(embedding_dim), profile.mean]))
        self.register_buffer("scale", torch.cat([torch.ones(embedding_dim), profile.scale]))
        self.mlp = mlp
        loaded = self._read(embeddings_path)
        if loaded is not None:
            expected = (n_users, embedding_dim) + ((n_items, n_layers, n_edges) if finetune_graph else ())
            found = (loaded.n_users, loaded.embedding_dim) + (
                (loaded.n_items, loaded.n_layers, int(loaded.edges.shape[1])) if finetune_graph else ()
            )
            if expected != found:
                raise ValueError(
                    f"{embeddings_path} holds sizes {found} but the extractor was given {expected} "
                    "(n_users, embedding_dim[, n_items, n_layers, n_edges]): build it with make_agent"
                )
            table = loaded.user_embeddings.float()
            self.shift[:embedding_dim] = table.mean(dim=0)
            self.scale[:embedding_dim] = 1.0 / table.std(dim=0).clamp(min=1e-6)
        if finetune_graph:
            self.gcn = make_lightgcn(n_users + n_items, embedding_dim, n_layers)
            self.register_buffer("edges", torch.zeros(2, n_edges, dtype=torch.long))
            if loaded is not None:
                with torch.no_grad():
                    self.gcn.embedding.weight.copy_(loaded.node_weights)
                self.edges.copy_(loaded.edges)
            self.n_items = int(n_items)
            self._adjacency: torch.Tensor | None = None
        else:
            table = torch.zeros(n_users, embedding_dim)
            if loaded is not None:
                table = loaded.user_embeddings.float()
            self.register_buffer("user_embeddings", table.clone())

    @staticmethod
    def _read(path: str | None) -> LightGCNEmbeddings | None:
        if path is None:
            return None
        if not Path(path).is_file():
            logger.info("embeddings file %s not found: user embeddings come from the saved model state", path)
            return None
        return LightGCNEmbeddings.load(path)

    def adjacency(self) -> torch.Tensor:
        """The normalised training graph (fine-tuning), rebuilt from the ``edges`` buffer once."""
        if self._adjacency is None or self._adjacency.device != self.edges.device:
            edges = self.edges.cpu().numpy()
            graph = InteractionGraph(self.n_users, self.n_items, edges[0], edges[1], edges[0] * 0 - 1)
            self._adjacency = graph.normalized_adjacency().to(self.edges.device)
        return self._adjacency

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        # A restored ``edges`` buffer invalidates the cached adjacency.
        self._adjacency = None
        super()._load_from_state_dict(*args, **kwargs)

    def user_index(self, observations: torch.Tensor) -> torch.Tensor:
        """``obs[:, 0]`` as long user indices, checked against the table. Shapes: ``(B, ·) -> (B,)``."""
        users = observations[:, 0].round().long()
        if users.numel() and (int(users.min()) < 0 or int(users.max()) >= self.n_users):
            bad = users[(users < 0) | (users >= self.n_users)][0]
            raise ValueError(
                f"observation names user index {int(bad)}, outside 0..{self.n_users - 1}: the "
                "embeddings were pretrained on another dataset"
            )
        return users

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        """LightGCN embeddings of ``users``. Shapes: ``(B,) -> (B, embedding_dim)``."""
        if self.finetune_graph:  # F.embedding: a backward that sums rows in a fixed order (see lightgcn)
            return torch.nn.functional.embedding(users, self.gcn.get_embedding(self.adjacency()))
        return self.user_embeddings[users]

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        users = self.user_index(observations)
        x = torch.cat([self.user_vectors(users), observations[:, 1:]], dim=1)
        return self.mlp((x - self.shift) * self.scale)
