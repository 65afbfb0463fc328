"""Run in .local/infra-venv: print, as JSON, each Bicep file's tree-sitter error and missing nodes.

    .local/infra-venv/bin/python tests/infra/parse_bicep.py infra/main.bicep infra/app/*.bicep
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import tree_sitter  # type: ignore[import-not-found, unused-ignore]
import tree_sitter_bicep  # type: ignore[import-not-found, unused-ignore]


def errors(parser: tree_sitter.Parser, source: bytes) -> list[str]:
    found: list[str] = []
    pending = [parser.parse(source).root_node]
    while pending:
        node = pending.pop()
        if node.is_error or node.is_missing:
            row, column = node.start_point
            text = source[node.start_byte : node.end_byte].decode(errors="replace")[:60]
            found.append(f"{row + 1}:{column + 1} {'missing ' + node.type if node.is_missing else 'error'} {text!r}")
        elif node.has_error:
            pending.extend(node.children)
    return sorted(found)


def main(paths: list[str]) -> None:
    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))
    print(json.dumps({path: errors(parser, Path(path).read_bytes()) for path in paths}))


if __name__ == "__main__":
    main(sys.argv[1:])
