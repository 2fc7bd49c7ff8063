"""Wording shared by every checkpoint error: one line, and at most a few names quoted."""

from __future__ import annotations

from collections.abc import Iterable

MAX_LISTED = 4  # keys or names quoted in one error message


def one_line(err: BaseException) -> str:
    """An exception's text on one line, cut to 160 characters."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def listed(items: Iterable[str]) -> str:
    """The first few items joined by commas, with the total when some are left out."""
    items = list(items)
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f", ... ({len(items)} in all)" if len(items) > MAX_LISTED else "")
