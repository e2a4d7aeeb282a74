"""The report's Methodology appendix: ``docs/methodology.md``, rendered section by section.

The methodology has one home, ``docs/methodology.md``; readers of the repository read it there and
readers of a report read it in the appendix. Each top-level (``##``) section becomes one
``AppendixSection``: its title, an anchor, and its body as HTML. The body is rendered with
markdown-it-py (CommonMark plus tables) with raw HTML disabled, so anything that looks like a tag in the
document comes out escaped. Headings inside a section move one level down (``###`` becomes ``<h4>``),
so that a section sits under the report's ``Methodology`` heading with its own title as ``<h3>``; every
heading gets the anchor the document promises (a registered id is its own anchor, ``### `rollout` `` is
``id="rollout"``).

This module is a leaf: it imports nothing of the project but ``tasks.errors``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token

from tasks.errors import AuditError

METHODOLOGY = Path(__file__).resolve().parents[2] / "docs" / "methodology.md"
"""The methodology document of this checkout."""


@dataclass(frozen=True)
class AppendixSection:
    """One top-level section of the methodology, ready for the report.

    Attributes:
        id: The section's anchor: its title in lower case, words joined by hyphens.
        title: The section's title as plain text.
        html: The section's body (its heading excluded) as HTML, raw HTML escaped.
    """

    id: str
    title: str
    html: str


def anchor(text: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces to hyphens.

    ``anchor("`attention_last`") == "attention_last"``; ``anchor("The verdict") == "the-verdict"``.
    """
    kept = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return kept.replace(" ", "-")


def _parser() -> MarkdownIt:
    """CommonMark with tables; raw HTML is not passed through."""
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def _plain(inline: Token) -> str:
    """The text of an inline token, markup (code spans, emphasis) removed."""
    return "".join(child.content for child in inline.children or () if child.type in ("text", "code_inline"))


def _prepare_headings(tokens: Sequence[Token]) -> None:
    """Give every heading its anchor as ``id`` and move headings below ``##`` one level down."""
    for position, token in enumerate(tokens):
        if token.type not in ("heading_open", "heading_close"):
            continue
        level = int(token.tag[1])
        if token.type == "heading_open":
            token.attrSet("id", anchor(_plain(tokens[position + 1])))
        if level > 2:
            token.tag = f"h{min(level + 1, 6)}"


def methodology_appendix(path: Path = METHODOLOGY) -> tuple[AppendixSection, ...]:
    """The methodology's ``##`` sections, in order, each rendered to HTML.

    Text before the first ``##`` heading (the document's title and how to read it) is not a section.

    Args:
        path: The methodology document (default: ``docs/methodology.md`` of this checkout).

    Raises:
        AuditError: The document is missing or unreadable.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise AuditError(
            f"cannot read the methodology document {path}: {error.strerror or error}",
            "restore docs/methodology.md from the repository (the report's appendix is rendered from it)",
        ) from error
    parser = _parser()
    tokens = parser.parse(text)
    _prepare_headings(tokens)
    starts = [i for i, token in enumerate(tokens) if token.type == "heading_open" and token.tag == "h2"]
    sections = []
    for number, start in enumerate(starts):
        end = starts[number + 1] if number + 1 < len(starts) else len(tokens)
        title = _plain(tokens[start + 1])
        body = tokens[start + 3 : end]  # heading_open, inline, heading_close
        sections.append(
            AppendixSection(id=anchor(title), title=title, html=parser.renderer.render(body, parser.options, {}))
        )
    return tuple(sections)
