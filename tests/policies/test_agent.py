"""make_agent: PPO / MaskablePPO from the config; save/load, determinism, masking, selectors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback

from promptopt.config import config_from_dict
from promptopt.envs import BatchedPromptRecVecEnv
from promptopt.errors import ConfigError
from promptopt.policies.agent import make_agent, profile_moments
from promptopt.policies.extractor import LightGCNExtractor, ProfileExtractor
from promptopt.policies.graph import build_graph
from promptopt.policies.lightgcn import EmbeddingsFileError
from promptopt.policies.selectors import PPOSelector


def _config(seed: int = 3, **policy):
    return config_from_dict({
        "seed": seed,
        "ppo": {"n_steps": 16, "batch_size": 32, "n_epochs": 2},
        "policy": {"embedding_dim": 16, "hidden": [16], "pi": [16], "vf": [16], **policy},
    })


def _env(problem, ranker, n_envs=4, **kwargs):
    return BatchedPromptRecVecEnv(problem, ranker, n_envs, seed=0, **kwargs)


def _params(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.policy.parameters()]


def test_save_load_round_trip_gives_identical_actions(tmp_path, small_problem, simulated_ranker,
                                                      small_embeddings):
    emb = tmp_path / "lightgcn.pt"
    shutil.copy(small_embeddings, emb)
    model = make_agent(_env(small_problem, simulated_ranker), _config(), embeddings_path=emb)
    assert isinstance(model, MaskablePPO)
    model.learn(128)
    zip_path = tmp_path / "policy.zip"
    model.save(zip_path)
    size = zip_path.stat().st_size
    print(f"saved policy zip: {size / 1024:.1f} KiB")
    assert size < 256 * 1024  # embeddings (120 x 16) + small MLPs; no graph, no pickled data
    emb.unlink()  # the buffer, not the file, must carry the embeddings
    loaded = MaskablePPO.load(zip_path, device="cpu")
    users = np.concatenate([small_problem.split.train, small_problem.split.test])
    obs = np.stack([small_problem.observation(int(u)) for u in users])
    masks = np.stack([small_problem.action_mask(int(u)) for u in users])
    a, _ = model.predict(obs, action_masks=masks, deterministic=True)
    b, _ = loaded.predict(obs, action_masks=masks, deterministic=True)
    assert np.array_equal(a, b)
    np.testing.assert_array_equal(PPOSelector(model, small_problem).action_probabilities(users),
                                  PPOSelector(loaded, small_problem).action_probabilities(users))
    extractor = loaded.policy.features_extractor
    assert isinstance(extractor, LightGCNExtractor)
    assert extractor.user_embeddings.abs().sum() > 0


def test_training_is_deterministic_with_a_seed(small_problem, simulated_ranker, small_embeddings):
    runs = []
    for seed in (3, 3, 4):
        model = make_agent(_env(small_problem, simulated_ranker), _config(seed),
                           embeddings_path=small_embeddings)
        model.learn(128)
        runs.append(_params(model))
    assert all(torch.equal(x, y) for x, y in zip(runs[0], runs[1]))
    assert not all(torch.equal(x, y) for x, y in zip(runs[0], runs[2]))


class _MaskAudit(BaseCallback):
    """Records, per step, whether each sub-env's action was allowed by the mask MaskablePPO used."""

    def __init__(self) -> None:
        super().__init__()
        self.allowed: list[bool] = []
        self.restricted = 0
        self.invalid_infos = 0

    def _on_step(self) -> bool:
        masks = np.asarray(self.locals["action_masks"], dtype=bool)
        actions = np.asarray(self.locals["actions"]).reshape(-1)
        self.allowed.extend(masks[np.arange(len(actions)), actions].tolist())
        self.restricted += int((~masks).any(axis=1).sum())
        self.invalid_infos += sum(bool(info["invalid_action"]) for info in self.locals["infos"])
        return True


@pytest.mark.slow
def test_no_masked_action_is_taken_in_10000_steps(small_problem, simulated_ranker, small_embeddings):
    config = config_from_dict({
        "seed": 0, "ppo": {"n_steps": 125, "batch_size": 250, "n_epochs": 1},
        "policy": {"embedding_dim": 16, "hidden": [16], "pi": [16], "vf": [16]},
    })
    model = make_agent(_env(small_problem, simulated_ranker, n_envs=8), config,
                       embeddings_path=small_embeddings)
    audit = _MaskAudit()
    model.learn(10_000, callback=audit)
    assert len(audit.allowed) >= 10_000
    assert all(audit.allowed)
    assert audit.invalid_infos == 0
    # The check is not vacuous: many of these users could not fill some template.
    assert audit.restricted > 1_000


def test_make_agent_reads_the_policy_and_ppo_sections(small_problem, simulated_ranker, small_embeddings):
    config = config_from_dict({
        "seed": 1, "ppo": {"n_steps": 16, "batch_size": 32, "learning_rate": 1e-3, "ent_coef": 0.05,
                           "clip_range": 0.1, "n_epochs": 3},
        "policy": {"kind": "mlp", "maskable": False, "hidden": [12, 8], "pi": [5], "vf": [7]},
    })
    model = make_agent(_env(small_problem, simulated_ranker), config)
    assert type(model) is PPO
    assert isinstance(model.policy.features_extractor, ProfileExtractor)
    assert model.policy.features_extractor.features_dim == 8
    assert model.learning_rate == 1e-3 and model.ent_coef == 0.05 and model.n_epochs == 3
    assert model.policy.mlp_extractor.policy_net[0].out_features == 5
    assert model.policy.mlp_extractor.value_net[0].out_features == 7
    # The profile statistics are standardised with the training users' moments.
    mean, std = profile_moments(small_problem)
    torch.testing.assert_close(model.policy.features_extractor.profile.mean, torch.tensor(mean).float())
    assert len(std) == small_problem.obs_dim - 1


def test_make_agent_pretrains_lightgcn_when_the_file_is_missing(tmp_path, small_problem, simulated_ranker):
    graph = build_graph(small_problem.data, small_problem.train_mask)
    config = config_from_dict({"policy": {"embedding_dim": 8, "bpr_epochs": 2, "hidden": [8]},
                               "ppo": {"n_steps": 16, "batch_size": 32}})
    path = tmp_path / "sub" / "lightgcn.pt"
    model = make_agent(_env(small_problem, simulated_ranker), config, embeddings_path=path, graph=graph)
    assert path.is_file()
    kwargs = model.policy_kwargs["features_extractor_kwargs"]
    assert kwargs["embeddings_path"] == str(path) and kwargs["n_users"] == small_problem.data.n_users
    assert model.policy.features_extractor.user_embeddings.shape == (small_problem.data.n_users, 8)


def test_make_agent_errors_say_how_to_fix(tmp_path, small_problem, simulated_ranker):
    env = _env(small_problem, simulated_ranker)
    with pytest.raises(ConfigError, match="embeddings_path"):
        make_agent(env, _config())
    with pytest.raises(EmbeddingsFileError, match="does not exist"):
        make_agent(env, _config(), embeddings_path=tmp_path / "none.pt")

    class NoMasks:
        num_envs = 1

    with pytest.raises(ConfigError, match="action_masks"):
        make_agent(NoMasks(), _config(kind="mlp"))


def test_graph_finetuning_trains_the_node_embeddings(small_problem, simulated_ranker, small_embeddings):
    model = make_agent(_env(small_problem, simulated_ranker), _config(finetune_graph=True),
                       embeddings_path=small_embeddings)
    extractor = model.policy.features_extractor
    before = extractor.gcn.embedding.weight.detach().clone()
    model.learn(64)
    assert not torch.equal(before, extractor.gcn.embedding.weight.detach())


def test_ppo_selector_respects_masks_for_plain_ppo(small_problem, simulated_ranker, small_embeddings):
    model = make_agent(_env(small_problem, simulated_ranker), _config(maskable=False),
                       embeddings_path=small_embeddings)
    users = small_problem.split.train
    masks = np.stack([small_problem.action_mask(int(u)) for u in users])
    assert (~masks).any()
    for deterministic in (True, False):
        selector = PPOSelector(model, small_problem, deterministic=deterministic)
        chosen = selector.select(users)
        assert masks[np.arange(users.size), chosen].all()
    probs = PPOSelector(model, small_problem).action_probabilities(users)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert (probs[~masks] == 0).all()
    assert np.array_equal(PPOSelector(model, small_problem).select(users), probs.argmax(axis=1))


def test_ppo_selector_with_slot_actions(small_problem, simulated_ranker):
    env = _env(small_problem, simulated_ranker, action_space="multidiscrete")
    model = make_agent(env, _config(kind="mlp", maskable=False))
    selector = PPOSelector(model, small_problem)
    users = small_problem.split.test
    probs = selector.action_probabilities(users)
    assert probs.shape == (users.size, small_problem.n_templates)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    # A template's probability is the product of its slot options' probabilities.
    raw = selector.policy_probabilities(users[:1])[0]
    obs, _ = model.policy.obs_to_tensor(selector.observations(users[:1]))
    slots = [c.probs[0].detach().numpy() for c in model.policy.get_distribution(obs).distribution]
    vector = small_problem.catalog.slot_vector(5)
    assert raw[5] == pytest.approx(np.prod([slots[s][v] for s, v in enumerate(vector)]))
