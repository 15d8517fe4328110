"""``promptopt templates list | show | render | fields`` end to end through the CLI entry point."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from promptopt.config import config_from_dict
from promptopt.data import load_data
from promptopt.experiments.cli import main
from promptopt.templates import TemplateCatalog

SMALL = {"data": {"format": "synthetic", "synthetic": {"n_users": 60, "n_items": 120, "mean_history": 20,
                                                        "seed": 3}}}


@pytest.fixture()
def config_path(tmp_path: Path) -> Path:
    import yaml

    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(SMALL), encoding="utf-8")
    return path


def test_list_prints_every_template_of_the_default_catalog(capsys) -> None:
    assert main(["templates", "list"]) == 0
    out = capsys.readouterr().out
    catalog = TemplateCatalog.load("movies")
    assert out.splitlines()[0].startswith("movies: 24 templates")
    listed = re.findall(r"^\s*(\d+)\s+(\S+)\s+(index|title|json)\s+(\d+)\s+(.*)$", out, flags=re.M)
    assert [row[1] for row in listed] == list(catalog.ids)
    needs = {row[1]: row[4] for row in listed}
    assert needs["expert.attributes.none.index"] == "attributes"
    assert needs["expert.similar.none.index"] == "hints"


def test_list_music_with_include_as_json(capsys) -> None:
    assert main(["templates", "list", "--catalog", "music", "--include", "expert.recent*", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    ids = [t["id"] for t in payload["templates"]]
    assert payload["name"] == "music" and ids
    assert all(i.startswith("expert.recent") for i in ids)


def test_show_prints_text_and_requirements_of_any_template_of_the_file(capsys) -> None:
    # Not in the default subset of 24, but part of the catalog file.
    assert main(["templates", "show", "ranker.liked10.stepbystep.json"]) == 0
    out = capsys.readouterr().out
    assert "slots:         role=ranker, history=liked10, reasoning=stepbystep, output=json" in out
    assert "needs:         1 history items, 1 liked item(s), ratings" in out
    assert "  | {liked_titles:10}" in out
    assert "  | Think step by step." in out


def test_unknown_id_suggests_the_closest_and_exits_2(capsys) -> None:
    assert main(["templates", "show", "expert.recnt10.none.index"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "unknown template 'expert.recnt10.none.index'" in err
    assert "did you mean 'expert.recent10.none.index'" in err


def test_unknown_catalog_exits_2_with_one_line(capsys, tmp_path: Path) -> None:
    assert main(["templates", "list", "--catalog", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err
    assert "unknown template catalog" in err and len(err.strip().splitlines()) == 1


def test_render_fills_the_users_final_task(capsys, config_path: Path) -> None:
    data = load_data(config_from_dict(SMALL).data)
    user = data.user_ids[4]
    rows = data.user_rows(4)
    assert main(["templates", "render", "expert.recent5.none.index", "--user", user,
                 "--config", str(config_path)]) == 0
    captured = capsys.readouterr()
    prompt = captured.out
    # The final task's history is everything before the last interaction.
    history = [data.item_titles[i] for i in data.items[rows][:-1]]
    assert re.findall(r"^- (.*)$", prompt, flags=re.M) == history[-5:]
    numbered = re.findall(r"^(\d+)\. (.*)$", prompt, flags=re.M)
    assert [int(n) for n, _ in numbered] == list(range(1, 21))
    target_title = data.item_titles[int(data.items[rows][-1])]
    position = int(re.search(r"target shown at position (\d+)", captured.err).group(1))
    assert numbered[position - 1][1] == target_title


def test_render_json_with_hints_and_overrides(capsys, config_path: Path) -> None:
    data = load_data(config_from_dict(SMALL).data)
    user = data.user_ids[7]
    assert main(["templates", "render", "expert.popular.none.index", "--user", user, "--config",
                 str(config_path), "--json", "--split.n_negatives=9"]) == 0
    request = json.loads(capsys.readouterr().out)
    assert len(request["candidate_ids"]) == 10
    assert dict(request["meta"])["template"] == "expert.popular.none.index"
    assert dict(request["meta"])["user"] == user
    listed = re.findall(r"^\d+\. (.*)$", request["messages"][0][1], flags=re.M)
    assert len(listed) == 10
    assert any(line.endswith(("[popular]", "[niche]")) for line in listed)


def test_render_unknown_user_exits_2(capsys, config_path: Path) -> None:
    assert main(["templates", "render", "expert.recent5.none.index", "--user", "no-such-user",
                 "--config", str(config_path)]) == 2
    assert "unknown user 'no-such-user'" in capsys.readouterr().err


def test_fields_lists_every_field(capsys) -> None:
    from promptopt.templates import FIELDS

    assert main(["templates", "fields"]) == 0
    out = capsys.readouterr().out
    for name in FIELDS:
        assert "{" + name in out
