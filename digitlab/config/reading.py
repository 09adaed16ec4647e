"""Reading YAML safely: PyYAML's safe loader (no Python tags; its C parser where installed), no aliases, no key
written twice, at most 1 MB, UTF-8 only, every mistake one line naming the file and where in it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from digitlab.errors import ConfigError
from digitlab.options import size_text

MAX_CONFIG_BYTES = 1 << 20  # 1 MB


class _NoDuplicateKeys:
    """A key written twice is a mistake (YAML keeps the last one silently: `epochs: 1` then `epochs: 5` trains 5),
    so it is refused, naming the line of each. Mixed into both loaders."""

    def construct_mapping(self, node, deep=False):
        first: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<`: merged by the constructor below
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                if key in first:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first on line {first[key] + 1})", key_node.start_mark)
                first[key] = key_node.start_mark.line
            except TypeError:  # an unhashable key: the constructor below says so
                pass
        return super().construct_mapping(node, deep=deep)


class SafeLoader(_NoDuplicateKeys, yaml.SafeLoader):
    """PyYAML's safe loader (no Python tags), refusing aliases: a config has no use for them, and a chain of
    them ("billion laughs") expands exponentially."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(f"line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not allowed")
        return super().compose_node(parent, index)


# PyYAML's C parser (libyaml) where it is installed: ~10x faster than the Python one, which matters when the
# config.yaml of thousands of run folders is read. It composes in C, so aliases are found afterwards (a node
# reached twice); libyaml refuses nesting deeper than 1,000 levels itself.
CSafeLoader = type("CSafeLoader", (_NoDuplicateKeys, yaml.CSafeLoader), {}) if hasattr(yaml, "CSafeLoader") else None


class _Unusual(Exception):
    """The C loader met something the Python loader words better (an alias, any error)."""


def _shared(node) -> bool:
    """Whether a node tree reaches some node twice (an alias), without expanding anything."""
    seen, stack = set(), [node]
    while stack:
        n = stack.pop()
        if id(n) in seen:
            return True
        seen.add(id(n))
        if isinstance(n, yaml.SequenceNode):
            stack.extend(n.value)
        elif isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                stack.extend((k, v))
    return False


def _load_with(loader_class, text: str) -> tuple[Any, Any]:
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if loader_class is CSafeLoader and node is not None and _shared(node):
            raise _Unusual
        return (loader.construct_document(node) if node is not None else None), node
    finally:
        loader.dispose()


def _load(text: str) -> tuple[Any, Any]:
    """(data, node): the document and its node tree, which keeps every scalar as it was written. Read by the C
    loader where there is one; a document it refuses or finds an alias in is read again by the Python loader,
    whose errors (and line numbers) are the ones users see."""
    if CSafeLoader is not None:
        try:
            return _load_with(CSafeLoader, text)
        except (_Unusual, yaml.YAMLError, RecursionError, ValueError, TypeError):
            pass
    return _load_with(SafeLoader, text)


def parse_yaml(text: str, source: str, keep_text: tuple[str, ...] = ()) -> Any:
    """The document in `text`. Top-level keys named in `keep_text` keep their scalar value as written
    (`name: 1e5` is the name '1e5', not the number 100000.0)."""
    try:
        data, node = _load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(source, "", f"invalid YAML: {where}{exc.problem or exc}") from None
    except yaml.reader.ReaderError as exc:  # a character YAML refuses (a NUL byte): its place in the text
        line_start = text.rfind("\n", 0, exc.position) + 1
        where = f"line {text.count(chr(10), 0, exc.position) + 1}, column {exc.position - line_start + 1}"
        character = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise ConfigError(source, "", f"invalid YAML: {where}: unacceptable character #x{character:04x}: "
                                      f"{exc.reason}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, "", f"invalid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(source, "", "invalid YAML: nested too deeply") from None
    if keep_text and isinstance(data, dict) and isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(value_node, yaml.ScalarNode) and key_node.value in keep_text and \
                    value_node.tag != "tag:yaml.org,2002:null" and not isinstance(data.get(key_node.value), str):
                data[key_node.value] = value_node.value
    return data


def read_yaml(path: str | Path, keep_text: tuple[str, ...] = ("name",)) -> Any:
    """A YAML file's contents, refusing missing, huge, binary or malformed files with one line. Top-level keys in
    `keep_text` (the run or sweep name) are text as written."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(path, "", f"file is {size_text(size)}; configs are at most {size_text(MAX_CONFIG_BYTES)}")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, "", "file not found") from None
    except IsADirectoryError:
        raise ConfigError(path, "", "is a folder, expected a YAML file") from None
    except UnicodeDecodeError:
        raise ConfigError(path, "", "is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(path, "", f"cannot be read ({exc.strerror})") from None
    return parse_yaml(text, str(path), keep_text)


def dump(cfg: dict) -> str:
    """A config as YAML text (what a run folder's config.yaml holds). PyYAML's C emitter where installed, which
    writes the same text several times faster; text it cannot encode (a path with bytes that are not UTF-8, kept
    as surrogates) is written by the Python one, which escapes it."""
    options = {"sort_keys": False, "default_flow_style": None, "allow_unicode": True}
    if hasattr(yaml, "CSafeDumper"):
        try:
            return yaml.dump(cfg, Dumper=yaml.CSafeDumper, **options)
        except (yaml.YAMLError, UnicodeError):
            pass
    return yaml.safe_dump(cfg, **options)
