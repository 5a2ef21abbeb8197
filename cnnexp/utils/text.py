"""Short texts for one-line messages: shapes, and lists cut to their first few items."""

SHOWN = 3  # items listed before "and N more"


def shape_text(shape) -> str:
    return "x".join(str(v) for v in shape)


def listing(items: list[str]) -> str:
    more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


def preview(names) -> str:
    names = list(names)
    return ", ".join(names[:SHOWN]) + (", ..." if len(names) > SHOWN else "")


def plural(count: int, word: str) -> str:
    """`1 epoch`, `2 epochs`: a count with its noun (regular plurals)."""
    return f"{count} {word}{'' if count == 1 else 's'}"
