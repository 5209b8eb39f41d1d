"""Text from user files and servers, shown exactly as it is: never read as markup, control characters escaped.

Sample ids, paths, refusal messages and error bodies reach the terminal, the notebook and the log
files. Rich would read ``[violence]`` as a style tag (and ``[/]`` as a broken one), HTML would
read ``<b>``, and a NUL or an escape sequence would garble a terminal or forge a log line. Every
such line is built here: :func:`printable` escapes control characters (``\\x00``, ``\\x1b``,
bidirectional overrides), :func:`line` makes a rich line whose words are literal apart from the
styles given with them, :func:`html_text` is the same for HTML widgets, :class:`LiteralFormatter`
for log files.
"""

from __future__ import annotations

import html
import logging
import re

from rich.text import Text

# C0 and C1 controls, DEL, line and paragraph separators, bidirectional embeddings and isolates.
_CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_CONTROLS_BUT_NEWLINE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escaped(match: re.Match) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def printable(text: object, *, keep_newlines: bool = False) -> str:
    """``text`` with each control character written as its escape (``\\x00``, ``\\n``, ``\\u202e``).

    Tabs stay; newlines stay only with ``keep_newlines`` (terminal messages of several lines,
    never a log line, where a newline would start a forged entry).
    """
    pattern = _CONTROLS_BUT_NEWLINE if keep_newlines else _CONTROLS
    return pattern.sub(_escaped, str(text))


def line(*parts: object | tuple[object, str]) -> Text:
    """A rich line of literal parts; a ``(text, style)`` pair is shown in that style, still literally.

    ``console.print(line(("failed", "red"), " ", key, ": ", message))`` prints the key and the
    message as they are, whatever brackets, emoji codes or control characters they hold.
    """
    pieces = []
    for part in parts:
        text, style = part if isinstance(part, tuple) else (part, "")
        pieces.append((printable(text, keep_newlines=True), style))
    return Text.assemble(*pieces)


def html_text(text: object) -> str:
    """``text`` for an HTML widget or report: printable, with ``<``, ``>``, ``&`` and quotes escaped."""
    return html.escape(printable(text, keep_newlines=True))


class LiteralFormatter(logging.Formatter):
    """A log formatter that escapes control characters in each line's message (tracebacks stay as they are)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        return printable(super().formatMessage(record))
