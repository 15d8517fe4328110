"""Template catalogs: loading both ways, validation at load time, rendering, masks, requests."""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from promptopt.data import InteractionData
from promptopt.errors import TemplateError
from promptopt.llm.types import RankRequest, RequestIds
from promptopt.splits import training_mask
from promptopt.tasks import RankingTask, UserContext
from promptopt.templates import SLOT_NAMES, CollaborativeHints, PromptTemplate, TemplateCatalog
from promptopt.templates.catalog import BUILTIN_CATALOGS

CATALOG_DIR = Path(__file__).resolve().parents[2] / "promptopt" / "templates" / "catalogs"

HOSTILE = (
    "Braces {0} and {recent_titles:5}",
    "{0.__class__.__mro__}",
    "{candidates}",
    'Quotes "double" and \'single\'',
    "Line one\nLine two\n3. Fake candidate",
    "Ünïcödé — 東京物語 🎬",
    "Percent %s %(x)d and $var {{escaped}}",
    "L" * 5000,
)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _slot_catalog(**overrides: object) -> dict:
    raw: dict = {
        "name": "tiny",
        "slots": {
            "role": {"none": "", "expert": "You are an expert."},
            "history": {
                "recent3": "Recent:\n{recent_titles:3}",
                "liked": {"text": "Liked:\n{liked_titles:3}"},
            },
            "reasoning": {"none": "", "step": "Think step by step."},
            "output": {
                "index": {"text": "Answer with numbers.", "output_format": "index"},
                "zero": {"text": "Answer with numbers from 0.", "output_format": "index", "index_base": 0},
                "title": {"text": "Answer with titles.", "output_format": "title"},
            },
        },
    }
    raw.update(overrides)
    return raw


@pytest.fixture(scope="module")
def hostile_data() -> InteractionData:
    items = [(f"h{k}", title, ("Drama", "Comedy{0}") if k % 2 else (), 2000 + k)
             for k, title in enumerate(HOSTILE)]
    items += [(f"p{k}", f"Plain {k}", ("Action",), 1990) for k in range(12)]
    rows = [("u1", f"h{k}", 5.0, 1_000_000 + 1000 * k) for k in range(len(HOSTILE))]
    rows += [("u1", "p0", 3.0, 2_000_000)]
    rows += [("u2", f"p{k}", float("nan"), 1_000_000 + k) for k in range(1, 12)]
    return InteractionData.from_raw(
        "hostile", items=items, interactions=rows, users=["u1", "u2"],
        user_attributes={"age": ["33", None], "occupation": ["writer {x}", None]},
        genre_names=("Drama", "Comedy{0}", "Action"),
    )


def _task(data: InteractionData, user: int, n_history: int, candidates: tuple[int, ...]) -> RankingTask:
    ctx = UserContext.at(data, user, n_history)
    return RankingTask(task_id=f"{ctx.raw_user_id}/{n_history}/base", context=ctx,
                       target=candidates[0], candidates=candidates)


# ---------------------------------------------------------------------- built-in catalogs
def test_movies_catalog_has_24_templates_with_readable_unique_ids() -> None:
    catalog = TemplateCatalog.load("movies")
    assert len(catalog) == 24
    assert len(set(catalog.ids)) == 24
    assert list(catalog.slots) == list(SLOT_NAMES)
    assert "none" in catalog.slots["reasoning"]  # Kusano et al.: keep a no-reasoning option
    assert "expert.recent10.none.index" in catalog.ids
    for k, template in enumerate(catalog):
        assert template.id == ".".join(template.slots[s] for s in SLOT_NAMES)
        assert catalog.index_of(template.id) == k
        assert catalog.from_slot_vector(catalog.slot_vector(k)) == k
        assert template.text.count("{candidates:") == 1


def test_music_catalog_size_and_full_products() -> None:
    music = TemplateCatalog.load("music")
    assert 12 <= len(music) <= 48
    assert "none" in music.slots["reasoning"]
    full = TemplateCatalog.load("movies", include=["*"])
    raw = yaml.safe_load((CATALOG_DIR / "movies.yaml").read_text(encoding="utf-8"))
    assert len(full) == math.prod(len(raw["slots"][s]) for s in SLOT_NAMES)


@pytest.mark.parametrize("name", BUILTIN_CATALOGS)
def test_every_chosen_sentence_reaches_the_template(name: str) -> None:
    # RPP's released code let chosen sentences fall out of the prompt; here every option's text
    # must be in every template composed from it.
    raw = yaml.safe_load((CATALOG_DIR / f"{name}.yaml").read_text(encoding="utf-8"))
    catalog = TemplateCatalog.load(name, include=["*"])
    for template in catalog:
        for slot in SLOT_NAMES:
            option = raw["slots"][slot][template.slots[slot]]
            text = option if isinstance(option, str) else option["text"]
            first_line = text.split("\n")[0].split("{")[0].strip()
            assert first_line in template.text, (template.id, slot)


def test_unknown_catalog_name_is_one_clear_error() -> None:
    with pytest.raises(TemplateError, match=r"unknown template catalog 'moveis'.*movies, music"):
        TemplateCatalog.load("moveis")


def test_unknown_template_id_suggests_the_closest() -> None:
    catalog = TemplateCatalog.load("movies")
    with pytest.raises(TemplateError, match=r"did you mean 'expert\.recent10\.none\.index'"):
        catalog.index_of("expert.recnt10.none.index")


# ---------------------------------------------------------------------- loading both ways
def test_explicit_list_catalog_from_yaml(tmp_path: Path) -> None:
    path = _write(tmp_path, """\
        name: listed
        templates:
          - id: sequential
            name: LLMRank sequential
            text: |
              I've watched the following movies in the past in order:
              {recent_titles:20}
              Now there are {n_candidates} candidate movies:
              {candidates}
              Rank them. Answer with numbers.
          - id: by-title
            text: "Recent: {recent_titles:5}\\n{candidates}\\nAnswer with titles."
            output_format: title
          - id: zero
            text: "{candidates}"
            index_base: 0
            min_history: 7
        """)
    catalog = TemplateCatalog.load(path)
    assert catalog.ids == ("sequential", "by-title", "zero")
    assert catalog.slots == {}
    assert catalog.slot_vector(0) == ()
    assert catalog["sequential"].name == "LLMRank sequential"
    assert catalog["sequential"].min_history == 20
    assert catalog["by-title"].output_format == "title"
    assert catalog["zero"].index_base == 0
    assert catalog["zero"].min_history == 7  # an explicit minimum can only make it stricter
    assert catalog["sequential"].text.endswith("Rank them. Answer with numbers.")


def test_slot_catalog_product_order_ids_and_settings() -> None:
    catalog = TemplateCatalog.from_dict(_slot_catalog())
    assert len(catalog) == 2 * 2 * 2 * 3
    assert catalog.ids[:3] == ("none.recent3.none.index", "none.recent3.none.zero", "none.recent3.none.title")
    zero = catalog["expert.liked.step.zero"]
    assert (zero.output_format, zero.index_base) == ("index", 0)
    assert catalog["none.recent3.none.title"].output_format == "title"
    assert dict(zero.slots) == {"role": "expert", "history": "liked", "reasoning": "step", "output": "zero"}
    # Empty sentences ("no role", "no reasoning") leave no blank lines behind.
    assert catalog["none.recent3.none.index"].text.startswith("Recent:")
    assert "\n\n" not in catalog["none.recent3.none.index"].text


def test_include_patterns_keep_a_filtered_subset_and_slots_shrink() -> None:
    include = ["expert.*.none.index", "none.recent3.step.title"]
    catalog = TemplateCatalog.from_dict(_slot_catalog(), include=include)
    assert catalog.ids == ("none.recent3.step.title", "expert.recent3.none.index", "expert.liked.none.index")
    assert catalog.slots["output"] == ("index", "title")
    assert catalog.slots["history"] == ("recent3", "liked")
    index = catalog.index_of("expert.liked.none.index")
    assert catalog.from_slot_vector(catalog.slot_vector(index)) == index
    # A combination the filter dropped is not an action.
    assert catalog.from_slot_vector((0, 1, 1, 0)) is None  # none.liked.step.index
    single = TemplateCatalog.from_dict(_slot_catalog(), include="expert.recent3.step.*")
    assert len(single) == 3


def test_include_pattern_that_matches_nothing_fails() -> None:
    with pytest.raises(TemplateError, match=r"include pattern 'expert\.recnt3\.\*' matches no template"):
        TemplateCatalog.from_dict(_slot_catalog(), include=["expert.recnt3.*"])


def test_default_include_of_the_file_and_override() -> None:
    raw = _slot_catalog(default_include=["none.recent3.none.*"])
    assert len(TemplateCatalog.from_dict(raw)) == 3
    assert len(TemplateCatalog.from_dict(raw, include=["*"])) == 24


def test_max_history_caps_counts_and_requirements() -> None:
    catalog = TemplateCatalog.load("movies", include=["expert.recent50.none.index"], max_history=20)
    template = catalog[0]
    assert "{recent_titles:20}" in template.text
    assert template.min_history == 20
    with pytest.raises(TemplateError, match="max_history"):
        TemplateCatalog.load("movies", max_history=0)


def test_to_dict_round_trip_keeps_texts_and_slots() -> None:
    catalog = TemplateCatalog.load("movies")
    again = TemplateCatalog.from_dict(catalog.to_dict())
    assert again.ids == catalog.ids
    assert [t.text for t in again] == [t.text for t in catalog]
    assert again.slots == catalog.slots
    assert again.fingerprint == catalog.fingerprint
    changed = catalog.to_dict()
    changed["templates"][0]["text"] += " Be brief."
    assert TemplateCatalog.from_dict(changed).fingerprint != catalog.fingerprint


def test_template_rebuilds_from_its_stored_fields() -> None:
    # What the prompt book stores (id, name, text, slots, formats, requirements) rebuilds it.
    original = TemplateCatalog.load("movies")["expert.popular.none.index"]
    fields = ("id", "name", "text", "slots", "output_format", "index_base", "min_history",
              "needs_attributes", "needs_ratings", "uses_hints")
    rebuilt = PromptTemplate(**{f: getattr(original, f) for f in fields})
    assert rebuilt == original
    assert rebuilt.hint_kinds == {"popularity"}


# ---------------------------------------------------------------------- validation at load
@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        # an unknown field in the text
        ("""\
            name: bad
            templates:
              - id: seq
                text: "{hisotry}\\n{candidates}"
            """, r"template 'seq'.*unknown field 'hisotry'"),
        # an unknown key of a template
        ("""\
            name: bad
            templates:
              - id: seq
                text: "{candidates}"
                txt: oops
            """, r"template 'seq'.*unknown field 'txt'.*did you mean 'text'"),
        # a bad count argument
        ("""\
            name: bad
            templates:
              - id: seq
                text: "{recent_titles:ten}\\n{candidates}"
            """, r"template 'seq'.*field 'recent_titles'.*integer count"),
        # a count on a field that takes none
        ("""\
            name: bad
            templates:
              - id: seq
                text: "{last_title:3}\\n{candidates}"
            """, r"template 'seq'.*field 'last_title'.*takes no argument"),
        # a format specifier written in template text
        ("""\
            name: bad
            templates:
              - id: seq
                text: "{0.__class__}\\n{candidates}"
            """, r"template 'seq'.*field '0\.__class__'.*malformed placeholder"),
        # a lone brace
        ("""\
            name: bad
            templates:
              - id: seq
                text: "{candidates} }"
            """, r"template 'seq'.*lone '\}'"),
        # no candidate list
        ("""\
            name: bad
            templates:
              - id: seq
                text: "{recent_titles:5}"
            """, r"template 'seq'.*'candidates' must appear exactly once"),
        # wrong type of a template field
        ("""\
            name: bad
            templates:
              - id: seq
                text: "{candidates}"
                index_base: 2
            """, r"template 'seq'.*field 'index_base'.*0, 1.*got 2"),
        ("""\
            name: bad
            templates:
              - id: seq
                text: 42
            """, r"template 'seq'.*field 'text' must be a string, got int 42"),
        ("""\
            name: bad
            templates:
              - id: seq
                text: "{candidates}"
              - id: seq
                text: "{candidates}"
            """, r"template id 'seq' appears twice"),
        ("""\
            name: bad
            templates:
              - id: seq
                text: "{candidates}"
                text: "{candidates} again"
            """, r"line 5: key 'text' appears twice"),
    ],
    ids=["unknown-field", "unknown-key", "bad-count", "unexpected-arg", "format-spec", "lone-brace",
         "no-candidates", "index-base", "text-type", "duplicate-id", "duplicate-key"],
)
def test_listed_catalog_errors_name_template_and_field(tmp_path: Path, text: str, pattern: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(TemplateError, match=pattern) as info:
        TemplateCatalog.load(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (lambda r: r["slots"]["history"].update(recent3=10),
         r"'\*\.recent3\.\*\.\*' \(slot 'history', option 'recent3'\): value must be a string or a mapping"),
        (lambda r: r["slots"]["history"].update(recent3={"text": ["a"]}),
         r"option 'recent3'\): field 'text' must be a string, got list"),
        (lambda r: r["slots"]["history"].update(recent3={"text": "x", "colour": 1}),
         r"option 'recent3'\): unknown field 'colour'"),
        (lambda r: r["slots"]["history"].update(recent3="{recnt_titles:3}"),
         r"option 'recent3'\): unknown field 'recnt_titles'.*did you mean 'recent_titles'"),
        (lambda r: r["slots"]["output"]["index"].update(output_format="xml"),
         r"option 'index'\): field 'output_format' must be one of 'index', 'title', 'json', got 'xml'"),
        (lambda r: r["slots"]["role"].update({"a.b": "x"}), r"option id 'a\.b'.*no dots"),
        (lambda r: r["slots"].pop("reasoning"), r"missing field 'reasoning'"),
        (lambda r: r.update(layout="{role}\n{history}\n{candidates}\n{output}"),
         r"layout must hold \{reasoning\} exactly once"),
        (lambda r: r["slots"]["history"].update(recent3={"text": "x", "output_format": "title"}),
         r"field 'output_format' is set by options of 2 slots"),
        (lambda r: r["slots"]["reasoning"].update(step="{candidates}"),
         r"template 'none\.recent3\.step\.index'.*'candidates' must appear exactly once"),
        (lambda r: r.update(templates=[]), r"exactly one of 'slots'.*got both"),
        (lambda r: r.update(colour="red"), r"catalog: unknown field 'colour'"),
    ],
    ids=["option-int", "text-list", "option-key", "option-field", "enum", "dotted-option", "missing-slot",
         "layout-slot", "conflict", "two-candidate-lists", "both-kinds", "top-key"],
)
def test_slot_catalog_errors_name_templates_and_field(change, pattern: str) -> None:
    raw = _slot_catalog()
    change(raw)
    with pytest.raises(TemplateError, match=pattern) as info:
        TemplateCatalog.from_dict(raw, source="tiny.yaml")
    assert str(info.value).startswith("tiny.yaml: ")


def test_a_catalog_without_a_no_reasoning_option_is_warned_about(caplog) -> None:
    raw = _slot_catalog()
    raw["slots"]["reasoning"] = {"step": "Think step by step."}
    with caplog.at_level("WARNING", logger="promptopt.templates.compose"):
        TemplateCatalog.from_dict(raw, source="tiny.yaml")
    assert "no reasoning option is empty" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="promptopt.templates.compose"):
        TemplateCatalog.from_dict(_slot_catalog(), source="tiny.yaml")
    assert caplog.text == ""


def test_an_unknown_field_fails_even_when_the_include_filter_drops_its_templates() -> None:
    raw = _slot_catalog()
    raw["slots"]["history"]["broken"] = "{nope}"
    with pytest.raises(TemplateError, match="unknown field 'nope'"):
        TemplateCatalog.from_dict(raw, include=["none.recent3.none.index"])


# ---------------------------------------------------------------------- rendering
def test_render_is_exactly_the_template_with_values_substituted(hostile_data: InteractionData) -> None:
    template = PromptTemplate(id="exact", text="Last:\n{recent_titles:2}\n{{literal}}\n{candidates}\nEnd")
    task = _task(hostile_data, 0, 3, (hostile_data.item_ids.index("p3"), hostile_data.item_ids.index("p1")))
    expected = f"Last:\n- {HOSTILE[1]}\n- {HOSTILE[2]}\n{{literal}}\n1. Plain 3\n2. Plain 1\nEnd"
    assert template.render(task, hostile_data) == expected


def test_hostile_titles_render_verbatim_and_never_reach_other_fields(hostile_data: InteractionData) -> None:
    n = len(HOSTILE)
    shown = tuple(int(x) for x in np.random.default_rng(3).permutation(n))
    task = _task(hostile_data, 0, n, shown)
    text = (
        "About: {user_attributes}\nHistory:\n{recent_titles:50}\nWith genres:\n{recent_with_genres:50}\n"
        "Last: {last_title}\nProfile: {genre_profile}\nCandidates:\n{candidates}"
    )
    prompt = PromptTemplate(id="hostile", text=text).render(task, hostile_data)
    for title in HOSTILE:
        assert f"- {title}\n" in prompt
        assert prompt.count(title) >= 3  # history, history with genres, candidates
    assert "Comedy{0}" in prompt and "writer {x}" in prompt
    assert "<class" not in prompt and "mro" in prompt
    # The candidate list is the shown order, numbered from 1, whatever the titles contain.
    cursor = prompt.index("Candidates:\n")
    for k, item in enumerate(shown, start=1):
        line = f"\n{k}. {hostile_data.item_titles[item]}"
        found = prompt.index(line, cursor)
        assert found >= cursor
        cursor = found + len(line)
    assert prompt.endswith(hostile_data.item_titles[shown[-1]])


@pytest.mark.parametrize("index_base", [0, 1])
def test_shown_order_round_trip_through_the_request(synthetic_data, index_base: int) -> None:
    rng = np.random.default_rng(index_base)
    user = 5
    ctx_len = synthetic_data.history_length(user) - 1
    candidates = tuple(int(x) for x in rng.choice(synthetic_data.n_items, size=20, replace=False))
    task = _task(synthetic_data, user, ctx_len, candidates)
    template = PromptTemplate(id="order", text="{recent_titles:5}\n{candidates}", index_base=index_base)
    request = template.request(task, synthetic_data, sample_id=2)
    assert isinstance(request, RankRequest)
    listed = re.findall(r"^(\d+)\. (.*)$", request.prompt, flags=re.M)
    assert [int(n) for n, _ in listed] == list(range(index_base, index_base + 20))
    # The k-th listed title is the k-th candidate id, which is what the answer is read against.
    assert [title for _, title in listed] == [synthetic_data.item_titles[c] for c in request.candidate_ids]
    assert request.candidate_ids == task.candidates
    assert request.candidate_texts == tuple(synthetic_data.item_text(c) for c in task.candidates)
    assert (request.output_format, request.index_base, request.sample_id) == ("index", index_base, 2)
    assert request.ids == RequestIds(user=synthetic_data.user_ids[user], template="order", task=task.task_id,
                                     view=task.view)
    assert request.messages == (("user", request.prompt),)


def test_prompt_uses_the_task_users_history_only(synthetic_data) -> None:
    template = TemplateCatalog.load("movies")["expert.recent50.none.index"]
    for user in (3, 4):
        n = synthetic_data.history_length(user) - 1
        target = int(synthetic_data.items[synthetic_data.user_rows(user)][-1])
        task = _task(synthetic_data, user, n, (target,))
        prompt = template.render(task, synthetic_data)
        listed = re.findall(r"^- (.*)$", prompt, flags=re.M)
        history = synthetic_data.items[synthetic_data.user_rows(user)][:n]
        assert listed == [synthetic_data.item_titles[i] for i in history[-50:]]


def test_title_output_lists_candidates_without_numbers(synthetic_data) -> None:
    template = TemplateCatalog.load("movies")["expert.recent10.none.title"]
    task = _task(synthetic_data, 1, 10, (7, 3, 9))
    prompt = template.render(task, synthetic_data)
    assert "\n".join(f"- {synthetic_data.item_titles[c]}" for c in (7, 3, 9)) in prompt
    assert template.request(task, synthetic_data).output_format == "title"


def test_hint_template_without_hints_is_a_clear_error(synthetic_data) -> None:
    template = TemplateCatalog.load("movies")["expert.similar.none.index"]
    task = _task(synthetic_data, 1, 10, (7, 3, 9))
    with pytest.raises(TemplateError, match=r"expert\.similar\.none\.index.*hints=CollaborativeHints\.fit"):
        template.render(task, synthetic_data)


def test_popularity_candidates_are_tagged_from_hints(synthetic_data, synthetic_split) -> None:
    hints = CollaborativeHints.fit(synthetic_data, training_mask(synthetic_data, synthetic_split.train))
    order = np.argsort(-hints.item_popularity, kind="stable")
    top, bottom = int(order[0]), int(order[-1])
    task = _task(synthetic_data, 1, 10, (bottom, top))
    prompt = TemplateCatalog.load("movies")["expert.popular.none.index"].render(task, synthetic_data, hints)
    assert f"1. {synthetic_data.item_titles[bottom]} [niche]" in prompt
    assert f"2. {synthetic_data.item_titles[top]} [popular]" in prompt
    counts = PromptTemplate(id="c", text="{candidates:counts}").render(task, synthetic_data, hints)
    assert counts == (f"1. {synthetic_data.item_titles[bottom]} ({hints.popularity(bottom)} users)\n"
                      f"2. {synthetic_data.item_titles[top]} ({hints.popularity(top)} users)")


def test_missing_information_renders_placeholders_instead_of_failing(hostile_data: InteractionData) -> None:
    text = "{user_attributes}|{liked_titles:3}|{last_title}|{genre_profile}|{candidates}"
    task = _task(hostile_data, 1, 0, (0,))
    prompt = PromptTemplate(id="empty", text=text).render(task, hostile_data)
    assert prompt == "unknown|(none)|(none)|(none)|1. " + HOSTILE[0]


# ---------------------------------------------------------------------- valid_mask
def test_valid_mask_cases(hostile_data: InteractionData) -> None:
    catalog = TemplateCatalog.from_dict({"name": "m", "templates": [
        {"id": "recent3", "text": "{recent_titles:3}{candidates}"},
        {"id": "recent20", "text": "{recent_titles:20}{candidates}"},
        {"id": "liked", "text": "{liked_titles:5}{candidates}"},
        {"id": "rated", "text": "{recent_with_ratings:2}{candidates}"},
        {"id": "attrs", "text": "{user_attributes}{candidates}"},
        {"id": "similar", "text": "{similar_users_items:5}{candidates}"},
        {"id": "popular", "text": "{candidates:popularity}"},
        {"id": "nothing", "text": "{candidates}"},
    ]})
    rich = UserContext.at(hostile_data, 0, len(HOSTILE) + 1)   # ratings, liked items, attributes
    bare = UserContext.at(hostile_data, 1, 11)                 # no ratings, no attributes
    short = UserContext.at(hostile_data, 0, 2)
    unliked = UserContext(user=0, raw_user_id="u1", items=(0, 1, 2), ratings=(1.0, 2.0, 3.0),
                          timestamps=(1, 2, 3))
    expect = {
        "rich": [True, False, True, True, True, True, True, True],
        "bare": [True, False, False, False, False, True, True, True],
        "short": [False, False, True, True, True, True, True, True],
        "unliked": [True, False, False, True, False, True, True, True],
    }
    for name, ctx in (("rich", rich), ("bare", bare), ("short", short), ("unliked", unliked)):
        mask = catalog.valid_mask(ctx)
        assert mask.dtype == bool and mask.shape == (len(catalog),)
        assert mask.tolist() == expect[name], name
        # missing() explains exactly the masked templates.
        assert [not t.missing(ctx) for t in catalog] == expect[name]
    no_hints = catalog.valid_mask(rich, hints=False)
    assert no_hints.tolist() == [True, False, True, True, True, False, False, True]
    assert "hints" in catalog["similar"].missing(rich, hints=False)[0]


def test_valid_mask_with_fitted_hints_masks_hints_that_say_nothing(hostile_data: InteractionData) -> None:
    catalog = TemplateCatalog.from_dict({"name": "m", "templates": [
        {"id": "similar", "text": "{similar_users_items:5}{candidates}"},
        {"id": "together", "text": "{co_consumed:5}{candidates}"},
        {"id": "popular", "text": "{candidates:popularity}"},
    ]})
    # Only user u2 is in the training graph; u1's history shares no item with it.
    mask = np.zeros(hostile_data.n_interactions, dtype=bool)
    mask[hostile_data.user_rows(1)] = True
    hints = CollaborativeHints.fit(hostile_data, mask)
    stranger = UserContext.at(hostile_data, 0, 3)
    assert catalog.valid_mask(stranger, hints=hints).tolist() == [False, False, True]
    overlap = UserContext(user=0, raw_user_id="u1", items=(len(HOSTILE) + 1, len(HOSTILE) + 2),
                          ratings=(5.0, 5.0), timestamps=(1, 2))
    assert catalog.valid_mask(overlap, hints=hints).tolist() == [True, True, True]


def test_movies_masks_on_real_users(synthetic_data, synthetic_split) -> None:
    catalog = TemplateCatalog.load("movies")
    hints = CollaborativeHints.fit(synthetic_data, training_mask(synthetic_data, synthetic_split.train))
    recent50 = catalog.index_of("expert.recent50.none.index")
    attributes = catalog.index_of("expert.attributes.none.index")
    for user in range(synthetic_data.n_users):
        n = synthetic_data.history_length(user) - 1
        ctx = UserContext.at(synthetic_data, user, n)
        mask = catalog.valid_mask(ctx, hints=hints)
        assert mask[recent50] == (len(set(ctx.items)) >= 50)
        assert mask[attributes] == (bool(ctx.attributes) and len(set(ctx.items)) >= 10)
        assert mask[catalog.index_of("expert.recent5.none.index")] == (n >= 5)
