"""EpisodeObservations: the user index and profile of the episode's context; masks from the catalog."""

from __future__ import annotations

import numpy as np

from promptopt.observations import EpisodeObservations


def test_observation_is_user_index_and_profile_of_the_episode_context(
    robust_problem, synthetic_split
) -> None:
    problem = robust_problem
    for user in (int(synthetic_split.train[0]), int(synthetic_split.test[1])):
        obs = problem.observation(user)
        assert obs.shape == (problem.obs_dim,) and obs.dtype == np.float32
        assert obs[0] == user
        np.testing.assert_array_equal(obs[1:], problem.profile.encode(problem.tasks(user)[0].context))
        assert problem.observation(user) is obs  # cached
        assert not obs.flags.writeable
    user = int(synthetic_split.train[0])
    assert not np.array_equal(problem.observation(user), problem.observation(user, final=True))


def test_action_mask_follows_the_catalog(robust_problem, five_templates, synthetic_data) -> None:
    problem = robust_problem
    masks = np.stack([problem.action_mask(u) for u in range(synthetic_data.n_users)])
    assert masks.shape == (synthetic_data.n_users, len(five_templates)) and masks.dtype == bool
    assert masks[:, 0].all()  # every user has 5 items
    long_ok = np.array([len(problem.tasks(u)[0].context) >= 40 for u in range(synthetic_data.n_users)])
    np.testing.assert_array_equal(masks[:, 4], long_ok)
    assert 0 < long_ok.sum() < synthetic_data.n_users
    assert not problem.action_mask(0).flags.writeable


def test_an_episode_without_context_observes_zeros_and_masks_nothing(robust_problem, five_templates) -> None:
    observations = EpisodeObservations(robust_problem.profile, five_templates, None, lambda key: None)
    obs = observations.observation((7, -1))
    np.testing.assert_array_equal(obs, np.array([7] + [0] * (observations.obs_dim - 1), dtype=np.float32))
    assert observations.action_mask((7, -1)).all()
    # Without hints, the hint template is masked for a real context.
    hintless = EpisodeObservations(robust_problem.profile, five_templates, None,
                                   robust_problem.task_set.context)
    key = robust_problem.key(0)
    assert not hintless.action_mask(key)[3] and hintless.action_mask(key)[0]
