"""YAML for user-written files (configs, template catalogs): safe, and strict about repeated keys.

Plain PyYAML silently keeps the last of two equal keys, so a typo-free but repeated
``learning_rate:`` would change a run without a word; here it is an error naming the line. A key that
is a list or a mapping is an error too, and so is a document whose aliases expand to more than
:data:`MAX_NODES` nodes (a few hundred bytes of nested ``&a [*b, *b, ...]`` anchors, the "billion
laughs", would otherwise expand to gigabytes as soon as anything walks or prints the value).
"""

from __future__ import annotations

from typing import Any

from promptopt.errors import PromptoptError

MAX_NODES = 100_000
"""Most YAML nodes a document may expand to, aliases counted at every use (configs hold a few hundred)."""


def load_strict_yaml(text: str, source: str, error: type[PromptoptError]) -> Any:
    """Parse ``text`` with a SafeLoader that rejects a mapping key given twice.

    Args:
        text: The YAML document.
        source: Where it came from (a path), used in messages.
        error: The :class:`PromptoptError` subclass to raise (``ConfigError``, ``TemplateError``).

    Raises:
        error: Invalid YAML (with its line), a repeated or unhashable key (with its line), nesting
            too deep, or aliases that expand past :data:`MAX_NODES` nodes.
    """
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        """Rejects a mapping key given twice."""

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                kind = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
                raise error(f"{source}: line {key_node.start_mark.line + 1}: a key must be a name, "
                            f"not a {kind}")
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise error(f"{source}: line {key_node.start_mark.line + 1}: key {key!r} appears twice")
            seen.add(key)
        return loader.construct_mapping(node, deep=deep)

    UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    loader = None
    try:
        loader = UniqueKeyLoader(text)  # a SafeLoader subclass: no arbitrary objects
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, source, error)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        reason = " ".join(str(getattr(exc, "problem", None) or exc).split())  # one line
        raise error(f"{source}: not valid YAML{where}: {reason}") from None
    except RecursionError:  # PyYAML recurses once per nesting level ("[[[[...")
        raise error(f"{source}: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def _check_expansion(root: Any, source: str, error: type[PromptoptError]) -> None:
    """Refuse a node graph that expands past :data:`MAX_NODES` nodes or refers to itself.

    The composed graph shares aliased nodes, so its size in memory is small; the expanded size is
    what a walk over the constructed value costs. Counted bottom-up with memoisation, iteratively.
    """
    import yaml

    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _children(node, yaml)
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            if size[key] > MAX_NODES:
                raise error(f"{source}: line {node.start_mark.line + 1}: aliases expand to more than "
                            f"{MAX_NODES} values; write the values out instead of nesting anchors")
            continue
        if key in size:
            continue
        if key in on_path:
            raise error(f"{source}: line {node.start_mark.line + 1}: an alias refers to itself")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)


def _children(node: Any, yaml: Any) -> list[Any]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []
