"""Export of a run's chosen prompts: the versioned prompt book (``prompts.json``) and its schema."""

from promptopt.export.prompt_book import PromptBook, ServedPrompt, TemplateScore, UserChoice
from promptopt.export.validation import SCHEMA_PATH, SCHEMA_VERSION, validate

__all__ = [
    "SCHEMA_PATH",
    "SCHEMA_VERSION",
    "PromptBook",
    "ServedPrompt",
    "TemplateScore",
    "UserChoice",
    "validate",
]
