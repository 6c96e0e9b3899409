"""Read the YAML config safely: bounded size, aliases, nesting; duplicate keys refused; lines kept.

The config is edited by hand and may come from anywhere, so reading it must
never exhaust memory or time. PyYAML shares an aliased node wherever it is
referenced, but everything that walks the result (the line map, pydantic)
expands it again, so a 1 KB "billion laughs" would grow without bound. Here
the document is composed once, walked once with a budget on expanded values
and on depth, and only then constructed from the same nodes.
"""

from __future__ import annotations

import yaml

MAX_BYTES = 1 << 20  # a config with every section and comment is about 12 KB
MAX_ALIASES = 100
MAX_VALUES = 20_000  # mapping entries and list items, with every alias expanded
MAX_DEPTH = 32
MERGE_KEY = "tag:yaml.org,2002:merge"


class YamlProblem(ValueError):
    """What is wrong with the file, and the 1-based line where it is (0 when unknown)."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line


def decode(data: bytes) -> str:
    """The file's text; a size cap and UTF-8 only, with the line of the first bad byte."""
    if len(data) > MAX_BYTES:
        raise YamlProblem(0, f"the file is {len(data):,} bytes; a config is at most {MAX_BYTES:,}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise YamlProblem(line, f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file "
                                f"as UTF-8") from None


class _Loader(yaml.SafeLoader):
    """SafeLoader that counts the aliases it composes, so the file is parsed only once."""

    def __init__(self, text: str):
        super().__init__(text)
        self.aliases = 0

    def compose_node(self, parent, index):
        # Composing is cheap however many aliases there are (each is a reference); expanding is not.
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
        return super().compose_node(parent, index)


def _invalid(exc: yaml.YAMLError) -> YamlProblem:
    mark = getattr(exc, "problem_mark", None)
    return YamlProblem(mark.line + 1 if mark else 0,
                       f"not valid YAML: {getattr(exc, 'problem', None) or exc}")


def read(text: str) -> tuple[object, dict[str, int]]:
    """(the document, a map of each YAML path 'a.b[2].c' to the line where it is written)."""
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise YamlProblem(line, f"character #x{exc.character:04x} is not allowed in YAML") from None
    try:
        try:
            root = loader.get_single_node()
        except RecursionError:
            raise YamlProblem(0, f"nested too deeply (at most {MAX_DEPTH} levels)") from None
        except yaml.YAMLError as exc:
            raise _invalid(exc) from None
        if loader.aliases > MAX_ALIASES:
            raise YamlProblem(0, f"{loader.aliases} aliases (*name); a config uses at most "
                                 f"{MAX_ALIASES}")
        if root is None:
            return None, {}
        lines = _walk(root)
        try:
            return loader.construct_document(root), lines
        except yaml.YAMLError as exc:  # e.g. a tag no safe constructor knows ("=", "!!python/...")
            raise _invalid(exc) from None
    finally:
        loader.dispose()


def _walk(root: yaml.Node) -> dict[str, int]:
    found: dict[str, int] = {}
    budget = [MAX_VALUES]

    def spend(node: yaml.Node) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise YamlProblem(node.start_mark.line + 1,
                              f"the aliases here expand to more than {MAX_VALUES:,} values")

    def walk(node: yaml.Node, path: str, depth: int, open_nodes: frozenset[int]) -> None:
        if depth > MAX_DEPTH:
            raise YamlProblem(node.start_mark.line + 1, f"nested too deeply (at most {MAX_DEPTH} levels)")
        if id(node) in open_nodes:
            raise YamlProblem(node.start_mark.line + 1, "an alias refers to a node that contains it")
        inside = open_nodes | {id(node)}
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key, value in node.value:
                spend(key)
                line = key.start_mark.line + 1
                if key.tag == MERGE_KEY:
                    walk(value, path, depth + 1, inside)
                    continue
                name = str(key.value)
                if not isinstance(key, yaml.ScalarNode):
                    raise YamlProblem(line, "a key must be a plain name")
                if name in seen:
                    raise YamlProblem(line, f"{(path + '.' if path else '') + name}: given twice "
                                            f"(first on line {seen[name]})")
                seen[name] = line
                child = f"{path}.{name}" if path else name
                found.setdefault(child, line)
                walk(value, child, depth + 1, inside)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                spend(item)
                child = f"{path}[{index}]"
                found.setdefault(child, item.start_mark.line + 1)
                walk(item, child, depth + 1, inside)

    walk(root, "", 0, frozenset())
    return found
