"""YAML for user-written files (configs, template catalogs): safe, and strict about repeated keys.

Plain PyYAML silently keeps the last of two equal keys, so a typo-free but repeated
``learning_rate:`` would change a run without a word; here it is an error naming the line.
"""

from __future__ import annotations

from typing import Any

from promptopt.errors import PromptoptError


def load_strict_yaml(text: str, source: str, error: type[PromptoptError]) -> Any:
    """Parse ``text`` with a SafeLoader that rejects a mapping key given twice.

    Args:
        text: The YAML document.
        source: Where it came from (a path), used in messages.
        error: The :class:`PromptoptError` subclass to raise (``ConfigError``, ``TemplateError``).

    Raises:
        error: Invalid YAML (with its line), a repeated key (with its line), or nesting too deep.
    """
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        """Rejects a mapping key given twice."""

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise error(f"{source}: line {key_node.start_mark.line + 1}: key {key!r} appears twice")
            seen.add(key)
        return loader.construct_mapping(node, deep=deep)

    UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        reason = " ".join(str(getattr(exc, "problem", None) or exc).split())  # one line
        raise error(f"{source}: not valid YAML{where}: {reason}") from None
    except RecursionError:  # PyYAML recurses once per nesting level ("[[[[...")
        raise error(f"{source}: nested too deeply") from None
