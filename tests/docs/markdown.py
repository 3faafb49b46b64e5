"""The shell blocks of the project's Markdown files, with the `docs-test` markers that say how to run them.

A marker is an HTML comment on the line right before a fence; its clauses are separated by `;` (a skip's
reason may hold one):

    <!-- docs-test: skip (needs docker buildx) -->            not run here; the reason is required
    <!-- docs-test: background; wait http://127.0.0.1:8000/healthz -->
                                                              started, left running until the end; `wait` polls
                                                              the URL until it answers (else: alive after 3 s)
    <!-- docs-test: replace "--devices 20" "--devices 2" -->  run with OLD replaced by NEW (a smaller fleet, say)
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from markdown_it import MarkdownIt

SHELL = frozenset({"sh", "bash", "console", "shell"})
MARKER = re.compile(r"^\s*<!--\s*docs-test:(?P<clauses>.*?)-->\s*$")
SKIP = re.compile(r"^skip\s*\((?P<reason>.*)\)$")


@dataclass
class Block:
    """One fenced shell block: where it is, its text, and what its marker says."""

    path: str  # relative to the repository root
    line: int  # of the opening fence, 1-based
    text: str
    skip: str | None = None
    background: bool = False
    wait: str | None = None
    replace: list[tuple[str, str]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"


def _apply(block: Block, clauses: str) -> None:
    """Set what a marker's clauses say; `ValueError` for a clause this module does not know."""
    for clause in (part.strip() for part in re.split(r";(?![^(]*\))", clauses)):  # not a ";" inside (...)
        skip = SKIP.match(clause)
        words = shlex.split(clause) if not skip else []
        if skip:
            if not skip["reason"].strip():
                raise ValueError(f"{block.id}: a skipped block needs a reason: skip (why)")
            block.skip = skip["reason"].strip()
        elif words == ["background"]:
            block.background = True
        elif len(words) == 2 and words[0] == "wait":
            block.wait = words[1]
        elif len(words) == 3 and words[0] == "replace":
            if words[1] not in block.text:
                raise ValueError(f"{block.id}: replace {words[1]!r}: not in the block")
            block.replace.append((words[1], words[2]))
        else:
            raise ValueError(f"{block.id}: unknown docs-test clause {clause!r}")


def blocks(root: Path, relative: str) -> list[Block]:
    """Every fenced shell block of one Markdown file, in order, its marker applied (parsed by markdown-it)."""
    tokens = MarkdownIt("commonmark").parse((root / relative).read_text())
    found: list[Block] = []
    for previous, token in zip([None, *tokens], tokens, strict=False):
        language = token.info.split()[0] if token.info.strip() else ""
        if token.type != "fence" or language not in SHELL or token.map is None:
            continue
        block = Block(relative, token.map[0] + 1, token.content)
        marker = MARKER.match(previous.content.strip()) if previous and previous.type == "html_block" else None
        if marker:
            _apply(block, marker["clauses"])
        found.append(block)
    return found


def markdown_files(root: Path) -> list[str]:
    """README.md, then docs/*.md, in the order the test runs them."""
    return ["README.md", *sorted(str(path.relative_to(root)) for path in (root / "docs").glob("*.md"))]
