"""Collaborative hints learn from the training graph only, and say what they should."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from promptopt.data import InteractionData
from promptopt.splits import target_rows, time_cut_at_quantile, training_mask
from promptopt.tasks import UserContext
from promptopt.templates import CollaborativeHints, PromptTemplate


def _data(sequences: dict[str, list[str]], n_items: int = 12) -> InteractionData:
    items = [(f"i{k}", f"Item {k}", ("G",), None) for k in range(n_items)]
    rows = [(user, item, 4.0, 1_000 + 10 * pos)
            for user, seq in sequences.items() for pos, item in enumerate(seq)]
    return InteractionData.from_raw("hand", items=items, interactions=rows, users=list(sequences))


def _ctx(data: InteractionData, user: str, items: list[str]) -> UserContext:
    idx = [data.item_ids.index(i) for i in items]
    return UserContext(user=data.user_ids.index(user), raw_user_id=user, items=tuple(idx),
                       ratings=(4.0,) * len(idx), timestamps=tuple(range(len(idx))))


def _all_hint_items(hints: CollaborativeHints, data: InteractionData, users) -> set[int]:
    seen: set[int] = set()
    for user in users:
        for row in target_rows(data, int(user), 3):
            ctx = UserContext.at(data, int(user), row)
            seen.update(hints.similar_users_items(ctx, 50))
            seen.update(hints.co_consumed(ctx, 50))
    return seen


def test_an_item_seen_only_in_held_out_targets_never_appears_in_a_hint(
    synthetic_data, synthetic_split
) -> None:
    # Add a brand-new item that only test users interact with, as their final (held-out) target.
    data = synthetic_data
    secret = data.n_items
    test_users = [int(u) for u in synthetic_split.test[:10]]
    items = [*data.items.tolist()]
    ends = [data.user_rows(u).stop - 1 for u in test_users]
    for end in ends:
        items[end] = secret
    leaky = dataclasses.replace(
        data,
        item_ids=(*data.item_ids, "secret"),
        item_titles=(*data.item_titles, "The Secret Target"),
        item_genres=(*data.item_genres, ("Drama",)),
        item_years=(*data.item_years, 2001),
        items=np.array(items),
    )
    mask = training_mask(leaky, n_targets=3, time_cut=time_cut_at_quantile(leaky, 0.8))
    assert not mask[ends].any()
    hints = CollaborativeHints.fit(leaky, mask)
    assert hints.popularity(secret) == 0 and hints.popularity_tag(secret) == "niche"
    everyone = range(leaky.n_users)
    assert secret not in _all_hint_items(hints, leaky, everyone)
    # Nor does any item that only ever occurs outside the training mask.
    held_out_only = set(np.unique(leaky.items[~mask])) - set(np.unique(leaky.items[mask]))
    assert held_out_only & _all_hint_items(hints, leaky, everyone) == set()


def test_rows_outside_the_mask_have_no_influence(synthetic_data, synthetic_split) -> None:
    data = synthetic_data
    mask = training_mask(data, synthetic_split.train, n_targets=3)
    hints = CollaborativeHints.fit(data, mask)
    # Scramble every held-out row's item: hints fitted on the mask must not change at all.
    rng = np.random.default_rng(0)
    items = data.items.copy()
    items[~mask] = rng.integers(0, data.n_items, size=int((~mask).sum()))
    scrambled = CollaborativeHints.fit(dataclasses.replace(data, items=items), mask)
    assert np.array_equal(hints.item_popularity, scrambled.item_popularity)
    for user in synthetic_split.test:
        ctx = UserContext.at(data, int(user), data.history_length(int(user)) - 1)
        assert hints.similar_users_items(ctx, 10) == scrambled.similar_users_items(ctx, 10)
        assert hints.co_consumed(ctx, 10) == scrambled.co_consumed(ctx, 10)
    # And the hints are not trivially empty.
    ctx = UserContext.at(data, int(synthetic_split.test[0]), 10)
    assert len(hints.similar_users_items(ctx, 10)) == 10
    assert len(hints.co_consumed(ctx, 10)) == 10


def test_similar_users_vote_for_their_items_and_never_repeat_the_history() -> None:
    data = _data({
        "a": ["i1", "i2", "i3"],
        "b": ["i1", "i2", "i3", "i9"],          # same taste as a, plus i9
        "c": ["i1", "i5", "i6", "i7", "i8"],   # a little overlap
        "d": ["i10", "i11"],                    # nothing in common
    })
    hints = CollaborativeHints.fit(data, np.ones(data.n_interactions, dtype=bool), n_neighbors=2)
    ctx = _ctx(data, "a", ["i1", "i2", "i3"])
    suggested = [data.item_ids[i] for i in hints.similar_users_items(ctx, 10)]
    assert suggested[0] == "i9"
    assert set(suggested) == {"i9", "i5", "i6", "i7", "i8"}
    assert not {"i1", "i2", "i3", "i10", "i11"} & set(suggested)
    assert hints.similar_users_items(_ctx(data, "a", []), 5) == []


def test_the_users_own_training_row_does_not_vote() -> None:
    data = _data({"a": ["i1", "i2", "i8"], "b": ["i1", "i2", "i4"]})
    hints = CollaborativeHints.fit(data, np.ones(data.n_interactions, dtype=bool))
    ctx = _ctx(data, "a", ["i1", "i2"])
    assert [data.item_ids[i] for i in hints.similar_users_items(ctx, 5)] == ["i4"]


def test_co_consumed_follows_sequences_within_the_window() -> None:
    data = _data({
        "a": ["i1", "i2", "i3", "i4"],
        "b": ["i5", "i3", "i4", "i6"],
        "c": ["i3", "i4", "i7", "i8", "i9", "i10", "i11"],
    })
    hints = CollaborativeHints.fit(data, np.ones(data.n_interactions, dtype=bool), window=1, recent=1)
    ctx = _ctx(data, "a", ["i0", "i3"])
    together = [data.item_ids[i] for i in hints.co_consumed(ctx, 5)]
    assert together[0] == "i4"              # right after i3 for three users
    assert set(together) == {"i4", "i2", "i5"}
    assert "i11" not in together            # far outside the window


def test_popularity_counts_distinct_training_users_and_tags() -> None:
    sequences = {f"u{k}": ["i0"] + (["i1"] if k < 5 else []) + ([f"i{k}"] if k >= 2 else [])
                 for k in range(10)}
    data = _data(sequences, n_items=12)
    mask = np.ones(data.n_interactions, dtype=bool)
    mask[data.user_rows(9)] = False          # u9 is not in the training graph
    hints = CollaborativeHints.fit(data, mask, popular_share=0.2, niche_share=0.5)
    assert hints.popularity(0) == 9 and hints.popularity(1) == 5 and hints.popularity(9) == 0
    assert hints.popularity_tag(0) == "popular"
    assert hints.popularity_tag(9) == "niche" and hints.popularity_tag(11) == "niche"
    assert [hints.popularity_tag(i) for i in (1, 5)] == ["popular", ""]  # ties at 1 user stay untagged
    flat = CollaborativeHints.fit(_data({f"u{k}": [f"i{k}"] for k in range(12)}), np.ones(12, dtype=bool))
    assert {flat.popularity_tag(i) for i in range(12)} == {""}


def test_fit_rejects_a_mask_of_the_wrong_shape(synthetic_data) -> None:
    with pytest.raises(ValueError, match=r"train_mask must be a bool array of shape"):
        CollaborativeHints.fit(synthetic_data, np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="window must be >= 1"):
        CollaborativeHints.fit(synthetic_data, np.ones(synthetic_data.n_interactions, dtype=bool), window=0)


def test_hints_render_in_templates_and_are_deterministic(synthetic_data, synthetic_split) -> None:
    from promptopt.tasks import RankingTask

    mask = training_mask(synthetic_data, synthetic_split.train)
    first = CollaborativeHints.fit(synthetic_data, mask)
    second = CollaborativeHints.fit(synthetic_data, mask)
    user = int(synthetic_split.test[1])
    ctx = UserContext.at(synthetic_data, user, synthetic_data.history_length(user) - 1)
    task = RankingTask(task_id="t", context=ctx, target=0, candidates=(0, 1, 2))
    text = "Also:\n{similar_users_items:3}\nTogether:\n{co_consumed:3}\n{candidates}"
    template = PromptTemplate(id="h", text=text)
    prompt = template.render(task, synthetic_data, first)
    assert prompt == template.render(task, synthetic_data, second)
    for item in first.similar_users_items(ctx, 3) + first.co_consumed(ctx, 3):
        assert f"- {synthetic_data.item_titles[item]}\n" in prompt
