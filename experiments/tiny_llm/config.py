"""The tiny-LLM results YAML: a ``tiny_llm`` section (:class:`TinyLLMConfig`) and an ``experiment``.

``experiment`` is an ordinary experiment config (data, split, templates, the hf ranker, the answer
cache, ``reward.bootstrap`` = shown orders per task, the LightGCN sizes under ``policy``).
``--tiny_llm.key=value`` overrides go to the protocol, every other ``--section.key=value`` to it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from promptopt.config import ExperimentConfig, apply_overrides, config_from_dict
from promptopt.errors import ConfigError
from promptopt.strict_yaml import load_strict_yaml

SECTION = "tiny_llm"


@dataclass(frozen=True)
class TinyLLMConfig:
    """The protocol's own settings (the ``tiny_llm`` section)."""

    users: int = 150
    """Test users evaluated (the first of the split's seeded test pool)."""
    generate_users: int = 150
    """Of those, the users generate mode ranks (at most ``users``; generation costs ~10x a score request)."""
    index_templates: tuple[str, ...] = ("expert.recent10.none.index",)
    """Score mode with index labels (the candidate's number): these templates (``*.index``)."""
    title_templates: tuple[str, ...] = ("expert.recent10.none.title",)
    """Score mode with title labels (length-normalised log-likelihood of the title): these (``*.title``)."""
    generate_templates: tuple[str, ...] = ("expert.recent10.none.title",)
    """Generate mode (greedy decoding, then parsing; with and without grounding): these templates."""
    embedding_template: str = "expert.recent10.none.index"
    """The prompt the MiniLM embedding ranker compares with the candidates."""
    max_new_tokens: int = 96
    """Generate mode's token limit (about 8 titles: NDCG@10 reads the top 10)."""
    chunk: int = 32
    """Requests per ranker call (progress is logged, and answers are cached, per chunk)."""
    output: str = "docs/RESULTS_smollm2.md"
    """The generated report."""
    work_dir: str = "runs/tiny_llm"
    """LightGCN weights and the raw results (results.json)."""
    note: str = ""
    """Printed in the report's protocol section (say here why a run was sized as it was)."""

    def templates(self) -> tuple[str, ...]:
        """Every template id the protocol renders, once each, in first-use order."""
        ids = (*self.index_templates, *self.title_templates, *self.generate_templates,
               self.embedding_template)
        return tuple(dict.fromkeys(ids))


def load_tiny_llm(path: str | Path, overrides: Sequence[str] = ()) -> tuple[ExperimentConfig, TinyLLMConfig]:
    """Read the YAML; ``--tiny_llm.key=v`` overrides go to the protocol, the rest to ``experiment``.

    Raises:
        ConfigError: Missing file, unknown key, bad value, a dataset folder that does not exist, a
            template the protocol names that ``experiment.templates.include`` lacks.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"tiny_llm config {path} does not exist") from None
    raw = load_strict_yaml(text, f"tiny_llm config {path}", ConfigError) or {}
    if not isinstance(raw, dict) or set(raw) - {SECTION, "experiment"}:
        got = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
        raise ConfigError(f"{path}: expected the sections '{SECTION}' and 'experiment', got {got}")
    own = [o for o in overrides if o.lstrip("-").startswith(f"{SECTION}.")]
    section = apply_overrides({SECTION: raw.get(SECTION) or {}}, own)[SECTION]
    known = {f.name for f in dataclasses.fields(TinyLLMConfig)}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key '{SECTION}.{unknown[0]}' (known: {', '.join(sorted(known))})")
    try:
        protocol = TinyLLMConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in section.items()})
    except TypeError as exc:
        raise ConfigError(f"{path}: bad {SECTION} section: {exc}") from None
    experiment = apply_overrides(raw.get("experiment") or {}, [o for o in overrides if o not in own])
    experiment.setdefault("name", path.stem)
    config = config_from_dict(experiment, source=str(path))
    _check(path, config, protocol)
    return config, protocol


def _check(path: Path, config: ExperimentConfig, protocol: TinyLLMConfig) -> None:
    p = protocol
    if min(p.users, p.generate_users, p.chunk, p.max_new_tokens) < 1:
        raise ConfigError(
            f"{path}: {SECTION}.users, generate_users, chunk and max_new_tokens must be >= 1, got "
            f"users={protocol.users}, generate_users={protocol.generate_users}, chunk={protocol.chunk}, "
            f"max_new_tokens={protocol.max_new_tokens}"
        )
    if config.ranker.backend != "hf":
        raise ConfigError(f"{path}: experiment.ranker.backend must be hf (the LLM measured), got "
                          f"{config.ranker.backend!r}")
    if config.reward.robust_weight != 0:
        raise ConfigError(f"{path}: experiment.reward.robust_weight must be 0: the protocol ranks base tasks "
                          "and their shuffled copies only (reward.bootstrap)")
    for name, ids, fmt in (("index_templates", protocol.index_templates, ".index"),
                           ("title_templates", protocol.title_templates, ".title")):
        wrong = [t for t in ids if not t.endswith(fmt)]
        if wrong:
            raise ConfigError(f"{path}: {SECTION}.{name} holds {wrong[0]!r}, which is not a {fmt} template")
    include = set(config.templates.include or ())
    missing = [t for t in protocol.templates() if include and t not in include]
    if missing:
        raise ConfigError(f"{path}: template {missing[0]!r} is not in experiment.templates.include: add it")
    data = config.data
    if data.format != "synthetic" and (data.path is None or not Path(data.path).is_dir()):
        raise ConfigError(
            f"{path}: experiment.data.path {data.path!r} is not a folder (from {Path.cwd()}): set it to the "
            f"{data.format} folder or pass --data.path=/path/to/it"
        )
