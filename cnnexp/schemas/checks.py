"""Range checks beside the fields they check: a schema's `check()` runs when a composed config becomes
typed (`OmegaConf.to_object`, which every command does once before it runs), and each failure is one
`error:` line naming the key, the value and what it must be."""

from dataclasses import fields

from omegaconf import MISSING

from cnnexp.utils.errors import UserError


class Checked:
    """A schema with range checks. While Hydra reads the schema itself its fields are MISSING: nothing to
    check then."""

    def __post_init__(self) -> None:
        if not self.is_template():
            self.check()

    def is_template(self) -> bool:
        """Whether this is Hydra reading the schema itself (a field is still MISSING)."""
        return any(isinstance(getattr(self, f.name), str) and getattr(self, f.name) == MISSING for f in fields(self))

    def check(self) -> None:
        raise NotImplementedError


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def at_least(key: str, value, minimum: float, integer: bool = True, optional: bool = False) -> None:
    """`key=value must be an integer|a number >= minimum [or null]`."""
    if value is None and optional:
        return
    if not (is_number(value) and value >= minimum and (isinstance(value, int) or not integer)):
        what = "an integer" if integer else "a number"
        raise UserError(f"{key}={value!r} must be {what} >= {minimum}" + (" or null" if optional else ""))


def fraction(key: str, value, optional: bool = False) -> None:
    """A number in [0, 1)."""
    if value is None and optional:
        return
    if not (is_number(value) and 0 <= value < 1):
        raise UserError(f"{key}={value!r} must be a number in [0, 1)" + (" or null" if optional else ""))


def one_of(key: str, value, choices) -> None:
    if value not in choices:
        raise UserError(f"{key}={value} is not one of: {', '.join(str(c) for c in choices)}")


def positive(key: str, value, integer: bool, or_zero: bool = False) -> None:
    """`key=value must be a whole number|a number > 0 (>= 0)`."""
    kinds = int if integer else (int, float)
    in_range = is_number(value) and (value >= 0 if or_zero else value > 0)
    if isinstance(value, bool) or not isinstance(value, kinds) or not in_range:
        raise UserError(f"{key}={value!r} must be a {'whole number' if integer else 'number'} "
                        f"{'>= 0' if or_zero else '> 0'}")
