"""The prompt book: building, schema validation with JSON paths, serving, fallback, no torch."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap

import pytest

from promptopt.errors import PromptBookError
from promptopt.export import PromptBook, TemplateScore, UserChoice, validate
from promptopt.export.validation import SCHEMA_PATH, scrub_identity
from promptopt.tasks import UserContext

INCLUDE = ["expert.recent5.none.index", "expert.recent10.none.index", "expert.genres10.none.index",
           "expert.similar.none.index"]


@pytest.fixture(scope="module")
def catalog():
    from promptopt.templates import TemplateCatalog

    return TemplateCatalog.load("movies", include=INCLUDE)


@pytest.fixture(scope="module")
def users(synthetic_data) -> list[int]:
    """Users with long histories (every catalog template can be filled for them), then a stranger."""
    return [u for u in range(synthetic_data.n_users) if synthetic_data.history_length(u) >= 25][:3]


@pytest.fixture()
def book(catalog, synthetic_data, users) -> PromptBook:
    ids = catalog.ids
    choices = [
        UserChoice(user_id=synthetic_data.user_ids[users[0]], template_id=ids[2],
                   probabilities=(0.1, 0.2, 0.6, 0.1), prompt="filled prompt 0", split="test"),
        UserChoice(user_id=synthetic_data.user_ids[users[1]], template_id=ids[0],
                   probabilities=(0.7, 0.1, 0.1, 0.1), prompt=None, split="train"),
    ]
    return PromptBook.build(
        run={"name": "unit", "seed": 3},
        ranker_identity={"backend": "openai", "model": "m", "api_key": "sk-should-not-appear",
                         "nested": {"Authorization": "Bearer x", "max_tokens": 10}},
        dataset={"name": synthetic_data.name, "n_users": synthetic_data.n_users,
                 "n_items": synthetic_data.n_items, "n_interactions": synthetic_data.n_interactions},
        split={"n_train": 80, "n_val": 10, "n_test": 30},
        reward={"metric": "ndcg@10", "robust_weight": 0.3},
        catalog_name="movies",
        catalog_slots=catalog.slots,
        templates=[catalog[i] for i in range(len(catalog))],
        global_ranking=[TemplateScore(ids[0], 0.41, 50), TemplateScore(ids[1], 0.47, 50),
                        TemplateScore(ids[2], None, 0), TemplateScore(ids[3], 0.45, 40)],
        choices=choices,
        evaluation={"methods": {"policy": {"metrics": {"ndcg@10": {"mean": 0.5, "low": 0.4, "high": 0.6}}}}},
    )


def _gate(ids, threshold: float | None = 0.3) -> dict:
    from promptopt.safe_policy import GateRule

    return GateRule(order=(ids[1], ids[0], ids[3], ids[2]), threshold=threshold, metric="reward", split="val",
                    users=("41", "42"), gain=0.02, low=0.004, high=0.04).to_json()


@pytest.fixture()
def gated_book(book, catalog, synthetic_data, users) -> PromptBook:
    """The same book written by the safe policy: a gate, and each user's decision with its reason."""
    ids = catalog.ids
    payload = book.to_dict()
    payload["gate"] = _gate(ids)
    payload["users"][0].update(deviates=True, reason=f"deviates from {ids[1]!r} to the policy's {ids[2]!r}")
    payload["users"][1].update(deviates=False, reason=f"default {ids[0]!r}: the policy's margin 0.100 < 0.3")
    return PromptBook(payload)


def test_a_gated_book_says_for_each_user_whether_it_deviates_and_why(gated_book, catalog, synthetic_data,
                                                                    users) -> None:
    ids = catalog.ids
    assert gated_book.gate["threshold"] == 0.3 and gated_book.gate["split"] == "val"
    assert gated_book.fallback_order == (ids[1], ids[0], ids[3], ids[2])
    served = gated_book.prompt_for(_context(synthetic_data, users[0]), [1, 2, 3], synthetic_data)
    assert (served.template_id, served.deviates, served.fallback) == (ids[2], True, False)
    assert served.decision.startswith("deviates from")
    served = gated_book.prompt_for(_context(synthetic_data, users[1]), [1, 2, 3], synthetic_data)
    assert (served.template_id, served.deviates) == (ids[0], False)
    assert "margin 0.100 < 0.3" in served.decision
    served = gated_book.prompt_for(_context(synthetic_data, users[2]), [1, 2, 3], synthetic_data)
    assert not served.deviates and "not in the book" in served.decision
    # A build with a gate takes its default from the gate's ranked list.
    built = PromptBook.build(**{**_build_args(gated_book), "gate": _gate(ids, None)})
    assert built.default_template == ids[1] and built.gate["threshold"] is None


def _build_args(book: PromptBook) -> dict:
    p = book.to_dict()
    return {"run": p["run"], "ranker_identity": p["ranker"], "dataset": p["dataset"], "split": p["split"],
            "reward": p["reward"], "catalog_name": p["catalog"]["name"],
            "catalog_slots": p["catalog"]["slots"],
            "templates": p["catalog"]["templates"],
            "global_ranking": [TemplateScore(**r) for r in p["global_ranking"]],
            "choices": [UserChoice(user_id=r["user_id"], template_id=r["template_id"],
                                   probabilities=tuple(r["action_probabilities"])) for r in p["users"]]}


def test_an_old_book_without_a_gate_loads_and_says_so(book, tmp_path, synthetic_data, users) -> None:
    payload = book.to_dict()
    payload["schema_version"] = "1.0"  # written before the safe policy: no gate, no per-user decision
    path = tmp_path / "old.json"
    path.write_text(json.dumps(payload), encoding="utf-8")
    old = PromptBook.load(path)
    assert old.gate is None
    served = old.prompt_for(_context(synthetic_data, users[0]), [1, 2, 3], synthetic_data)
    assert served.template_id == payload["users"][0]["template_id"] and not served.fallback
    assert "has no validated gate (schema 1.0" in served.decision and "promptopt export" in served.decision


@pytest.mark.parametrize(
    ("change", "where"),
    [(lambda g: g.pop("order"), r"\$\.gate: 'order' is a required property"),
     (lambda g: g.update(threshold="high"), r"\$\.gate\.threshold: 'high' is not of type"),
     (lambda g: g["order"].append("expert.nothing"),
      r"\$\.gate\.order\[4\]: template 'expert\.nothing' is not")],
)
def test_a_damaged_gate_fails_in_one_line(gated_book, change, where) -> None:
    payload = gated_book.to_dict()
    change(payload["gate"])
    with pytest.raises(PromptBookError, match=where) as info:
        PromptBook(payload, source="prompts.json")
    assert "\n" not in str(info.value)


def test_build_sorts_ranking_sets_default_and_drops_credentials(book, catalog) -> None:
    ids = catalog.ids
    assert [s.template_id for s in book.global_ranking] == [ids[1], ids[3], ids[0], ids[2]]
    assert book.default_template == ids[1]
    assert "api_key" not in book.ranker
    assert book.ranker["nested"] == {"max_tokens": 10}
    assert "sk-should-not-appear" not in json.dumps(book.to_dict())
    assert book.schema_version.startswith("1.")


def test_save_load_round_trip(book, tmp_path, synthetic_data, users) -> None:
    path = book.save(tmp_path / "prompts.json")
    loaded = PromptBook.load(path)
    assert loaded.to_dict() == book.to_dict()
    assert loaded.choices == book.choices
    assert len(loaded) == 2
    assert synthetic_data.user_ids[users[1]] in loaded and synthetic_data.user_ids[users[2]] not in loaded
    assert loaded.template_for(synthetic_data.user_ids[users[1]]) == (loaded.template_ids[0], False)
    assert loaded.template_for("stranger") == (loaded.default_template, True)


def _mutate(payload: dict, path: tuple, value: object) -> dict:
    node = payload
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return payload


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        (("ranker",), KeyError, "$: 'ranker' is a required property"),
        (("users", 1, "action_probabilities"), "high", "$.users[1].action_probabilities"),
        (("users", 0, "action_probabilities", 2), 1.5, "$.users[0].action_probabilities[2]"),
        (("catalog", "templates", 0, "output_format"), "xml", "$.catalog.templates[0].output_format"),
        (("schema_version",), "2.0", "$.schema_version"),
        (("users", 1, "template_id"), "no.such.template", "$.users[1].template_id"),
        (("default_template",), "missing", "$.default_template"),
        (("users", 0, "action_probabilities"), [0.5, 0.5], "$.users[0].action_probabilities"),
    ],
)
def test_invalid_books_name_the_json_path(book, tmp_path, path, value, where) -> None:
    payload = _mutate(book.to_dict(), path, value)
    file = tmp_path / "bad.json"
    file.write_text(json.dumps(payload))
    with pytest.raises(PromptBookError) as info:
        PromptBook.load(file)
    message = str(info.value)
    assert where in message
    assert str(file) in message
    assert "\n" not in message


def test_secret_looking_identity_key_is_rejected_by_the_schema(book) -> None:
    payload = book.to_dict()
    payload["ranker"]["openai_api_key"] = "x"
    with pytest.raises(PromptBookError, match=r"\$\.ranker"):
        validate(payload)


def test_unreadable_files_are_one_line_errors(tmp_path) -> None:
    with pytest.raises(PromptBookError, match="does not exist"):
        PromptBook.load(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"schema_version": "1.0",\n  oops')
    with pytest.raises(PromptBookError, match="not valid JSON at line 2"):
        PromptBook.load(broken)


def test_schema_file_is_valid_json_schema() -> None:
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA_PATH.read_text()))


def test_scrub_identity_keeps_ordinary_fields() -> None:
    clean = scrub_identity({"backend": "hf", "model": "m", "secret_token": "x", "temperature": 0.0,
                            "stop": ("a", "b")})
    assert clean == {"backend": "hf", "model": "m", "temperature": 0.0, "stop": ["a", "b"]}


def _context(data, user: int) -> UserContext:
    return UserContext.at(data, user, data.history_length(user) - 1)


def test_prompt_for_known_user_renders_the_chosen_template(book, catalog, synthetic_data, users,
                                                           caplog) -> None:
    from promptopt.tasks import RankingTask

    ctx = _context(synthetic_data, users[0])
    candidates = [5, 17, 3, 42]
    with caplog.at_level(logging.INFO, logger="promptopt.export.prompt_book"):
        served = book.prompt_for(ctx, candidates, synthetic_data)
    assert not served.fallback
    assert served.template_id == catalog.ids[2]
    assert not caplog.records
    # Exactly what the catalog's own template renders for the same task.
    task = RankingTask(task_id="x", context=ctx, target=candidates[0], candidates=tuple(candidates))
    expected = catalog[2].request(task, synthetic_data, None)
    assert served.prompt == expected.prompt
    assert served.request.candidate_ids == tuple(candidates)
    positions = [served.prompt.index(synthetic_data.item_titles[c]) for c in candidates]
    assert positions == sorted(positions), "candidates must appear in the shown order"
    recent = synthetic_data.item_titles[ctx.items[-1]]
    assert recent in served.prompt


def test_prompt_for_unknown_user_falls_back_and_says_so(book, synthetic_data, users, caplog) -> None:
    ctx = _context(synthetic_data, users[2])
    assert ctx.raw_user_id not in book
    with caplog.at_level(logging.INFO, logger="promptopt.export.prompt_book"):
        served = book.prompt_for(ctx, [1, 2, 3], synthetic_data)
    assert served.fallback
    assert served.template_id == book.default_template
    assert "not in the prompt book" in served.reason
    assert any("not in the prompt book" in r.getMessage() for r in caplog.records)


def test_prompt_for_falls_back_when_the_chosen_template_cannot_be_filled(book, catalog, synthetic_data,
                                                                         users, caplog) -> None:
    import numpy as np

    from promptopt.templates import CollaborativeHints

    ids = catalog.ids
    assert catalog[3].uses_hints
    payload = book.to_dict()
    payload["users"][0].update(template_id=ids[3], action_probabilities=[0.1, 0.2, 0.3, 0.4])
    hinted = PromptBook(payload)
    ctx = _context(synthetic_data, users[0])
    with caplog.at_level(logging.INFO, logger="promptopt.export.prompt_book"):
        served = hinted.prompt_for(ctx, [1, 2, 3], synthetic_data)
    # The one fallback rule: the first fillable template of the ranked list (here the global ranking:
    # recent10, then similar, recent5, genres10), never the policy's next most probable template.
    assert served.fallback and served.template_id == ids[1], "the ranked list's first fillable template"
    assert "collaborative hints" in served.reason
    assert any("collaborative hints" in r.getMessage() for r in caplog.records)
    hints = CollaborativeHints.fit(synthetic_data, np.ones(synthetic_data.n_interactions, dtype=bool))
    served = hinted.prompt_for(ctx, [1, 2, 3], synthetic_data, hints=hints)
    assert (served.template_id, served.fallback, served.reason) == (ids[3], False, "")
    # A history too short for the chosen template falls back along the global ranking.
    short = UserContext.at(synthetic_data, users[0], 6)
    served = hinted.prompt_for(short, [1, 2, 3], synthetic_data, hints=hints)
    assert served.fallback and "needs 10 history items" in served.reason
    assert served.template_id == ids[0]  # recent5: the only one six items can fill


def test_prompt_for_rejects_bad_candidates(book, synthetic_data, users) -> None:
    ctx = _context(synthetic_data, users[0])
    with pytest.raises(PromptBookError, match="at least one candidate"):
        book.prompt_for(ctx, [], synthetic_data)
    with pytest.raises(PromptBookError, match=f"outside 0..{synthetic_data.n_items - 1}"):
        book.prompt_for(ctx, [1, synthetic_data.n_items + 3], synthetic_data)


@pytest.mark.parametrize("which", ["book", "gated_book"])
def test_loading_and_serving_import_no_torch(which, request, tmp_path, users) -> None:
    book = request.getfixturevalue(which)
    path = book.save(tmp_path / "prompts.json")
    script = textwrap.dedent(f"""
        import sys
        BLOCKED = {{"torch", "transformers", "sentence_transformers", "gymnasium",
                   "stable_baselines3", "sb3_contrib", "torch_geometric", "wandb"}}
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError("blocked in this test: " + name)
        sys.meta_path.insert(0, Block())
        from promptopt.data import make_synthetic
        from promptopt.export import PromptBook
        from promptopt.tasks import UserContext
        data = make_synthetic(n_users=120, n_items=200, n_genres=10, mean_history=30, seed=7)
        book = PromptBook.load({str(path)!r})
        user = {users[0]}
        ctx = UserContext.at(data, user, data.history_length(user) - 1)
        served = book.prompt_for(ctx, [4, 8, 15], data)
        print(served.template_id, served.fallback, len(served.prompt) > 0,
              sorted(m for m in BLOCKED if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    template_id, fallback, rendered, heavy = out.stdout.strip().split(" ", 3)
    assert template_id == book.choices[book.to_dict()["users"][0]["user_id"]].template_id
    assert (fallback, rendered, heavy) == ("False", "True", "[]")
