"""Errors a user can act on.

Every error raised for bad input derives from :class:`PromptoptError`; the CLI turns it into
one line on stderr and exit status 2. Messages name the offending value and the fix.
"""

from __future__ import annotations


class PromptoptError(Exception):
    """Base class of errors caused by user input (files, configs, arguments, servers)."""


class DataFormatError(PromptoptError):
    """A dataset file is missing, empty, undecodable or not in the expected layout."""


class ConfigError(PromptoptError):
    """A configuration key is unknown, has the wrong type or an invalid value."""


class NotEnoughNegatives(ConfigError, ValueError):
    """A user has fewer unseen items than ``split.n_negatives`` (a ``ValueError`` for library callers)."""


class TemplateError(PromptoptError):
    """A template names an unknown field or a slot value has the wrong type."""


class RankerError(PromptoptError):
    """A ranker backend failed after its retries (server down, bad answer, missing key)."""


class BudgetExceeded(PromptoptError):
    """A run reached its call / token / cost budget; completed calls are already cached."""


class PromptBookError(PromptoptError):
    """A prompt book file does not validate against its JSON Schema."""
