"""Short texts for one-line messages: shapes, lists cut to their first few items, counts with their
noun, and text folded to the console width."""

import re
import textwrap

SHOWN = 3  # items listed before "and N more"


def shape_text(shape) -> str:
    return "x".join(str(v) for v in shape)


def listing(items: list[str], shown: int = SHOWN) -> str:
    """The first `shown` items, then "and N more"."""
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def percent(fraction) -> str:
    """0.0525 -> "5.25 %"; None -> "-"."""
    return "-" if fraction is None else f"{100 * fraction:.2f} %"


def preview(names) -> str:
    names = list(names)
    return ", ".join(names[:SHOWN]) + (", ..." if len(names) > SHOWN else "")


def plural(count: int, word: str) -> str:
    """`1 epoch`, `2 epochs`: a count with its noun (regular plurals)."""
    return f"{count} {word}{'' if count == 1 else 's'}"


WIDTH = 80  # the console width every command's plain output fits, on a terminal or in a pipe
HANGING = re.compile(r"^(\s*(?:\S+:|\S+ {2,}|[-*] ))\s*(?=\S)")  # `key: `, `name   `, `- `: where a line's text starts


def reflow(text: str, width: int = WIDTH) -> str:
    """Prose (paragraphs between blank lines) filled to `width` columns."""
    return "\n\n".join(textwrap.fill(" ".join(p.split()), width, break_long_words=False, break_on_hyphens=False)
                       for p in text.split("\n\n"))


def fold(text: str, width: int = WIDTH) -> str:
    """Every line of `text` wrapped at word boundaries to `width` columns (words are never cut), its
    continuation lines indented under where its text starts: after `group: ` or a `name   ` column,
    else 4 columns in from the line's own indent."""
    out = []
    for line in text.splitlines():
        if len(line) <= width:
            out.append(line)
            continue
        lead = HANGING.match(line)
        indent = len(lead[0]) if lead and len(lead[0]) <= width // 2 else len(line) - len(line.lstrip()) + 4
        out += textwrap.wrap(line, width, subsequent_indent=" " * indent, break_long_words=False,
                             break_on_hyphens=False) or [line]
    return "\n".join(out)
