"""The plan of a sweep: fixed train overrides, the grid (key -> values) and the seeds."""

import itertools
from dataclasses import dataclass, field

from omegaconf import OmegaConf

from cnnexp.utils.errors import UserError


@dataclass
class Plan:
    """Fixed train overrides, the grid (key -> value strings, in order) and the seeds."""

    fixed: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    seeds: list = field(default_factory=list)

    def points(self) -> list[tuple]:
        return list(itertools.product(*self.grid.values()))

    def runs(self) -> list[tuple]:
        """(point, seed) for every run, in launch order."""
        return [(point, seed) for point in self.points() for seed in self.seeds]

    def hydra_overrides(self) -> list[str]:
        swept = [f"{key}={','.join(values)}" for key, values in self.grid.items()]
        return [*self.fixed.values(), *swept, f"seed={','.join(self.seeds)}"]


def override_value(value) -> str:
    """A YAML value from a preset's grid, written as Hydra override syntax."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    return str(value)


def parse_overrides(args: list[str]) -> list:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_overrides(args)
    except HydraException as exc:
        raise UserError(f"cannot parse overrides: {str(exc).splitlines()[0]}") from exc


def make_plan(settings, train_args: list[str]) -> Plan:
    """Preset grid and overrides first, then the command line's (which win, key by key)."""
    plan = Plan()
    for line in settings.sweep.overrides:
        plan.fixed[line.split("=", 1)[0]] = str(line)
    for key, values in settings.sweep.grid.items():
        values = OmegaConf.to_container(values) if OmegaConf.is_list(values) else values
        if not isinstance(values, list) or not values:
            raise UserError(f"sweep.grid.{key} must be a non-empty list of values, e.g. [0.1, 0.01]")
        plan.grid[key] = [override_value(v) for v in values]
    for override in parse_overrides(train_args):
        key = override.get_key_element()
        plan.fixed.pop(key, None)
        plan.grid.pop(key, None)
        if override.is_sweep_override():
            if not override.is_discrete_sweep():
                raise UserError(f"'{override.input_line}': only lists (a,b,c), choice() and range() can be swept")
            plan.grid[key] = list(override.sweep_string_iterator())
        else:
            plan.fixed[key] = override.input_line
    plan.seeds = seeds_of(plan, settings.seeds)
    return plan


def seeds_of(plan: Plan, seeds) -> list[str]:
    """`seeds=N` means seed=0..N-1; an explicit `seed=...` (fixed or swept) is taken as given."""
    given = plan.grid.pop("seed", None) or ([plan.fixed.pop("seed").split("=", 1)[1]] if "seed" in plan.fixed
                                            else None)
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise UserError(f"seeds={seeds!r} must be an integer >= 1 (the number of seeds per grid point)")
    if given and seeds > 1:
        raise UserError("give either seeds=N or seed=..., not both")
    return given or [str(s) for s in range(seeds)]


def check_plan(plan: Plan) -> None:
    """Compose the train config with every value of every key once, so a typo is one line, up front."""
    from cnnexp.runner.app import check_composes

    first = {key: values[0] for key, values in plan.grid.items()}
    variants = [first] + [{**first, key: v} for key, values in plan.grid.items() for v in values[1:]]
    for point in variants:
        check_composes("train", [*plan.fixed.values(), *(f"{k}={v}" for k, v in point.items()),
                                 f"seed={plan.seeds[0]}"])
