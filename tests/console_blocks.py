"""The console examples of the README and the site's pages: collected, run and compared with what they
show, so no example drifts from the code (tests/test_docs_console.py).

A console example is a code block (indented, or fenced) with at least one line starting `$ `: that
line is a command, the lines after it (up to the next `$ `) are what it prints, stdout and stderr
together. How the shown lines are compared with the real ones:

- `...` inside a line stands for any text (a time, a speed, an absolute path), the spaces beside it
  included (so a column of numbers can stay aligned);
- a line that is only `...` (perhaps followed by a comment in parentheses) stands for any number of
  lines, none included;
- a run folder's timestamp (`2026-11-30_23-31-37`, `-2` for a second run in the same second) stands
  for any timestamp;
- trailing spaces do not count.

An HTML comment on the line right above a block says how it is run:

- none: run by the default tests (it must take a few seconds at most);
- `<!-- console: slow (reason) -->`: run by the slow tests (`pytest -m slow`), the page's slow blocks
  in order in one working folder, so a later block can use the run an earlier one made;
- `<!-- console: setup (name) -->`: run by the default tests in a folder that the setup `name`
  (tests/test_docs_console.py, SETUPS) first fills with the files the example reads (a photo folder
  with a damaged file, broken HDF5 files);
- `<!-- console: not run (reason) -->`: shown, never run, for a reason a test machine cannot meet (a
  GPU, a cluster, a server left running, hours of training, files that are not shipped).

The pages under docs/results/ record measurements (benchmarks and runs of minutes to hours, each
with the command that made it); their blocks are not run.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!-- console: (slow|not run|setup) \((?P<reason>.+)\) -->")
TIMESTAMP = r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d(?:-\d+)?"
ELIDED_LINE = re.compile(r"^\.\.\.(\s+\(.*\))?$")
RECORD_PAGES = "docs/results/"


@dataclass
class Step:
    command: str
    shown: list[str] = field(default_factory=list)


@dataclass
class Block:
    page: str  # relative to the repository root
    line: int  # where the block starts (1-based)
    kind: str  # quick | slow | not run
    reason: str
    steps: list[Step]
    setup: str = ""  # the named setup (tests/test_docs_console.py SETUPS) that makes the files it reads

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def code_blocks(lines: list[str]):
    """(first line index, the block's lines without their indentation, the line above it) of each
    indented or fenced code block."""
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            indent = len(line) - len(line.lstrip())
            j = i + 1
            while j < len(lines) and not lines[j].lstrip().startswith("```"):
                j += 1
            yield i + 1, [ln[indent:] for ln in lines[i + 1:j]], lines[i - 1] if i else ""
            i = j + 1
        elif line.startswith("    ") and (i == 0 or not lines[i - 1].strip() or MARKER.search(lines[i - 1])):
            j = i
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                j += 1
            body = [ln[4:] for ln in lines[i:j]]
            while body and not body[-1].strip():
                body.pop()
            yield i, body, lines[i - 1] if i else ""
            i = j
        else:
            i += 1


def steps_of(body: list[str]) -> list[Step]:
    """The `$ command` lines with what each shows; a command continued with a trailing backslash is
    joined with its next lines."""
    steps: list[Step] = []
    lines = iter(body)
    for line in lines:
        if line.startswith("$ "):
            command = line[2:]
            while command.endswith("\\"):
                command = command[:-1] + " " + next(lines).strip()
            steps.append(Step(command.strip()))
        elif steps:
            steps[-1].shown.append(line.rstrip())
    for step in steps:
        while step.shown and not step.shown[-1]:
            step.shown.pop()
    return steps


def console_blocks() -> list[Block]:
    blocks = []
    for path in pages():
        page = str(path.relative_to(ROOT))
        lines = path.read_text().splitlines()
        for start, body, above in code_blocks(lines):
            steps = steps_of(body)
            if not steps:
                continue
            marker = MARKER.search(above)
            if page.startswith(RECORD_PAGES):
                kind, reason = "not run", "a measurement recorded on a results page"
            elif marker and marker[1] == "setup":
                blocks.append(Block(page, start + 1, "quick", "", steps, setup=marker["reason"]))
                continue
            elif marker:
                kind, reason = marker[1], marker["reason"]
            else:
                kind, reason = "quick", ""
            blocks.append(Block(page, start + 1, kind, reason, steps))
    return blocks


def line_pattern(shown: str) -> str:
    """The regular expression one shown line stands for."""
    if ELIDED_LINE.match(shown.strip()):
        return r"(?:[^\n]*\n)*?"
    pieces = re.split(rf"(\.\.\.|{TIMESTAMP})", shown.rstrip())
    pattern = ""
    for i, piece in enumerate(pieces):
        if piece == "...":
            pattern += r"[^\n]*?"
        elif re.fullmatch(TIMESTAMP, piece):
            pattern += TIMESTAMP
        else:  # the spaces beside an elision belong to it: a column of numbers stays aligned either way
            if i + 1 < len(pieces) and pieces[i + 1] == "...":
                piece = piece.rstrip(" ")
            if i > 0 and pieces[i - 1] == "...":
                piece = piece.lstrip(" ")
            pattern += re.escape(piece)
    return pattern + r"[ \t]*\n"


def matches(shown: list[str], output: str) -> bool:
    """Whether the real output is what the block shows, with the elisions above."""
    real = "".join(line.rstrip() + "\n" for line in output.splitlines())
    return re.fullmatch("".join(line_pattern(line) for line in shown), real) is not None

