"""Prompt templates: the catalog of actions, their rendering, and collaborative hints.

* :class:`TemplateCatalog` — templates loaded from YAML, listed explicitly or composed from
  RPP's four sentence patterns (role x history x reasoning x output), with ``include`` filters
  and :meth:`~TemplateCatalog.valid_mask`.
* :class:`PromptTemplate` — text with placeholders parsed once at load time;
  :meth:`~PromptTemplate.render` and :meth:`~PromptTemplate.request` fill it for a
  :class:`~promptopt.tasks.RankingTask` (candidates in the shown order).
* :class:`CollaborativeHints` — similar users, co-consumed items and popularity from the training
  graph only.

The fields a template may use are in :data:`promptopt.templates.fields.FIELDS`; the catalog
format is documented in ``docs/templates.md``.
"""

from promptopt.templates.catalog import BUILTIN_CATALOGS, TemplateCatalog
from promptopt.templates.fields import FIELDS
from promptopt.templates.hints import CollaborativeHints
from promptopt.templates.schema import SLOT_NAMES
from promptopt.templates.template import PromptTemplate

__all__ = [
    "BUILTIN_CATALOGS",
    "FIELDS",
    "SLOT_NAMES",
    "CollaborativeHints",
    "PromptTemplate",
    "TemplateCatalog",
]
