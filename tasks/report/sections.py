"""The report's sections, in order: one list drives both the contents and the body.

Each section has a partial ``templates/sections/<id>.html.j2``; a section whose predicate is false
for the context is left out of the contents and of the body alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tasks.report.context import ReportContext


def _always(context: ReportContext) -> bool:
    return True


@dataclass(frozen=True)
class Section:
    """One section of the report.

    Attributes:
        id: The element id, the contents link target and the partial's name.
        title: The section's heading, and its contents entry unless ``entry`` is given.
        shown: Whether the section shows for a context.
        also: An extra contents link inside the section, ``(id, words)``, shown on screen only.
        entry: A shorter contents entry than the title.
    """

    id: str
    title: str
    shown: Callable[[ReportContext], bool] = _always
    also: tuple[str, str] | None = None
    entry: str | None = None

    @property
    def contents(self) -> str:
        """The words of the contents entry."""
        return self.entry or self.title

    @property
    def template(self) -> str:
        """The partial's path under ``templates/``."""
        return f"sections/{self.id}.html.j2"


SECTIONS: tuple[Section, ...] = (
    Section("summary", "Executive summary"),
    Section("verdict", "Verdict by slice"),
    Section("over-time", "Compared with the previous audit", lambda c: c.comparison is not None),
    Section("faithfulness", "Faithfulness against a random baseline"),
    Section("agreement", "Agreement of attention with the references"),
    Section("plausibility", "Plausibility against human rationales", lambda c: bool(c.plausibility)),
    Section("interventions", "Interventions on the attention"),
    Section("sanity", "Sanity checks"),
    Section(
        "seeds", "Seed baseline: other fine-tunings of the model", lambda c: c.seeds is not None, entry="Seed baseline"
    ),
    Section("literature", "The literature beside these numbers"),
    Section("examples", "Representative examples", also=("example-table", "every example")),
    Section("segments", "Text pairs: where the explanations fall", lambda c: bool(c.segments), entry="Text pairs"),
    Section("not-applicable", "Not applicable to this model", lambda c: bool(c.not_applicable)),
    Section("failures", "Failed examples", lambda c: bool(c.failures)),
    Section("completeness", "Integrated-gradients completeness"),
    Section("manifest", "Model, data and configuration"),
    Section("methodology", "Methodology"),
    Section("cost", "Cost of this audit"),
    Section("reproduce", "Reproducing this audit"),
)
"""Every section, in the order of the contents and of the body."""


def shown_sections(context: ReportContext, sections: Sequence[Section] = SECTIONS) -> list[Section]:
    """The sections that show for this context, in order."""
    return [section for section in sections if section.shown(context)]
