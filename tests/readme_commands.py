"""The commands a reader of README.md would type, read from the README itself.

Three places hold commands:

* fenced ```bash blocks: one command per logical line (a line ending in ``\\`` continues on the
  next), ``# ...`` comments removed, blank and comment-only lines skipped;
* fenced ```python blocks: the whole block is one program;
* inline code spans in the prose that start with a program a reader runs (``imggen ...``,
  ``papermill ...``, ``pip ...``, ``.venv/bin/...``, optionally after ``VAR=value`` assignments) and
  have at least one argument (a bare ``.venv/bin/imggen`` names the program, it is not a command),
  plus spans made only of ``VAR=value`` assignments (values a reader is told to set).

A command written twice (in a block and again in the prose) is listed once, where it first appears.
``export`` lines and assignment-only spans have kind ``environment``; the commands after an
``export`` in the same block carry it in ``exports``.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

PROGRAMS = frozenset({"imggen", "papermill", "python", "python3", "pip", "conda", "make", "source", "export",
                      "bash", "ray", "jupyter", "pytest", "apt-get", "apt", "sudo", "docker", "git", "curl"})
_FENCE = re.compile(r"^```(\w*)\s*$")
_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")  # environment variables are upper case


@dataclass(frozen=True)
class ReadmeCommand:
    text: str  # as a reader would type it: continuations joined, comment removed
    kind: str  # "shell", "python" or "environment"
    line: int  # README line it starts on
    where: str  # "bash block", "python block" or "prose"
    exports: tuple["ReadmeCommand", ...] = ()  # earlier ``export`` lines of the same block

    @property
    def id(self) -> str:
        """A short test id made from the command's text."""
        text = self.text if self.kind != "python" else _python_summary(self.text)
        words = [word.rstrip("/").rsplit("/", 1)[-1] or word for word in text.split()]  # paths by their last part
        slug = re.sub(r"[^A-Za-z0-9.]+", "-", " ".join(words)).strip("-")
        return f"L{self.line}-{slug[:70]}"

    def assignments(self) -> dict[str, str]:
        """``VAR=value`` pairs of an environment line (``export`` left out)."""
        words = shlex.split(self.text)
        if words and words[0] == "export":
            words = words[1:]
        return dict(word.split("=", 1) for word in words if _ASSIGNMENT.match(word))


def _python_summary(code: str) -> str:
    """The first line of a program that is not an import: what it is about."""
    lines = [line for line in code.splitlines() if line.strip() and not line.startswith(("import ", "from "))]
    return "python " + (lines[0] if lines else "block")


def strip_comment(line: str) -> str:
    """``line`` without a shell comment (a ``#`` starting a word outside quotes)."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip()
    return line.rstrip()


def _shell_lines(lines: list[str], first_line: int) -> list[tuple[int, str]]:
    """Logical lines of a shell block: (README line number, text without comment)."""
    joined: list[tuple[int, str]] = []
    pending: list[str] = []
    start = first_line
    for offset, raw in enumerate(lines):
        text = strip_comment(raw.strip())
        if not pending:
            start = first_line + offset
        continued = text.endswith("\\")
        if continued:
            text = text[:-1].rstrip()
        if text:
            pending.append(text)
        if not continued and pending:
            joined.append((start, " ".join(pending)))
            pending = []
    if pending:
        joined.append((start, " ".join(pending)))
    return joined


def _is_inline_command(text: str) -> bool:
    words = text.split()
    while words and _ASSIGNMENT.match(words[0]):
        words = words[1:]
    if not words:
        return bool(text.split())  # only assignments: values to set
    program = words[0]
    return (program in PROGRAMS or program.startswith(".venv/bin/")) and len(words) > 1


def _kind(text: str) -> str:
    words = text.split()
    if words[0] == "export" or all(_ASSIGNMENT.match(word) for word in words):
        return "environment"
    return "shell"


def parse_readme(markdown: str) -> list[ReadmeCommand]:
    """Every command of the README, in order of first appearance."""
    found: list[ReadmeCommand] = []
    prose: list[tuple[int, str]] = []  # (line number, text) outside fenced blocks
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if not fence:
            prose.append((index + 1, lines[index]))
            index += 1
            continue
        language, start = fence.group(1), index + 1
        end = start
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        body = lines[start:end]
        if language == "bash":
            exports: list[ReadmeCommand] = []
            for number, text in _shell_lines(body, start + 1):
                command = ReadmeCommand(text, _kind(text), number, "bash block", tuple(exports))
                found.append(command)
                if text.startswith("export "):
                    exports.append(command)
        elif language == "python":
            found.append(ReadmeCommand("\n".join(body) + "\n", "python", start + 1, "python block"))
        index = end + 1
    found.extend(_inline_commands(prose))
    unique: dict[str, ReadmeCommand] = {}
    for command in found:
        unique.setdefault(" ".join(command.text.split()) if command.kind != "python" else command.text, command)
    return sorted(unique.values(), key=lambda command: command.line)


def _inline_commands(prose: list[tuple[int, str]]) -> list[ReadmeCommand]:
    text = "\n".join(line for _, line in prose)
    numbers = [number for number, _ in prose]
    commands = []
    for match in re.finditer(r"`([^`]+)`", text):
        span = " ".join(match.group(1).split())
        if _is_inline_command(span):
            line = numbers[text.count("\n", 0, match.start())]
            commands.append(ReadmeCommand(span, _kind(span), line, "prose"))
    return commands
