"""Names inside the report's sentences."""

from tasks.explain.registry import METHODS
from tasks.report.words import in_sentence


def test_plain_titles_read_lowercase_and_names_keep_their_spelling():
    assert in_sentence("Last-layer attention") == "last-layer attention"
    assert in_sentence("Integrated gradients") == "integrated gradients"
    names = ("alti", "decompx", "globenc")
    assert [in_sentence(METHODS[name].title) for name in names] == ["ALTI", "DecompX", "GlobEnc"]
