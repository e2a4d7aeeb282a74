"""How the report writes names inside a sentence."""

from __future__ import annotations


def in_sentence(title: str) -> str:
    """A display title as it reads mid-sentence: ``Last-layer attention`` becomes ``last-layer attention``.

    Titles that are names (an uppercase letter after the first: ``ALTI``, ``DecompX``, ``GlobEnc``,
    ``Value Zeroing``) keep their spelling.
    """
    return title if any(character.isupper() for character in title[1:]) else title.lower()
