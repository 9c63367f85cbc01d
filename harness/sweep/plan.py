"""A sweep's plan: the preset's params and the command line parsed once by Hydra's override parser into tasks (their
cartesian product, in Hydra's order; ``parts=k`` as its k part tasks), each composed as its launcher will run it,
built into its ``Cell`` (a bad setting stops the sweep before any work) and named by what the sweep varies."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, open_dict

from harness.core.errors import HarnessError
from harness.run.cell import Cell, task_name


@dataclass(frozen=True)
class Task:
    """One task of a sweep: its Hydra overrides (``key=value``, as launchers take them) and the same as settings."""

    index: int
    overrides: tuple[str, ...]
    settings: tuple[tuple[str, str], ...]  # (key, value) pairs in order; a key keeps its ``+``/``~`` prefix off


@dataclass(frozen=True)
class PlannedTask(Task):
    """A task with its built cell and its run name: what the sweeper hands the task."""

    cell: Cell
    name: str  # the run's name
    config: DictConfig | None = None  # the task's config with its hydra node, composed once (the launchers use it)

    @property
    def label(self) -> str:
        """The run's name and, for a part of a cell, which part."""
        return task_name(self.name, self.cell)


def _key(override) -> str:
    return override.get_key_element().lstrip("+~")


def tasks_of(arguments: list[str], parts: Any = 1, part: Any = None, config_loader=None) -> list[Task]:
    """The tasks of ``arguments`` (``key=value`` or ``key=a,b,c``), in Hydra's order, a cell in parts as its part tasks.
    ``parts``/``part``: the primary config's values, for tasks that do not set them."""
    try:
        parsed = OverridesParser.create(config_loader=config_loader).parse_overrides(arguments)
    except HydraException as err:
        raise HarnessError(f"{err}: write each override as key=value (a sweep as key=a,b,c).") from None
    choices: dict[str, list[tuple[str, str, str]]] = {}  # key -> [(override text, key, value)]
    for override in parsed:
        element = override.get_key_element()
        if override.is_sweep_override():
            if not override.is_discrete_sweep():
                raise HarnessError(f"{override.input_line}: an interval sweeps nothing here; list the values "
                                   f"({element}=a,b,c) or give a range ({element}=range(1,5)).")
            values = list(override.sweep_string_iterator())
        else:
            values = [override.get_value_element_as_str()]
        choices[element] = [(f"{element}={v}", _key(override), v) for v in values]
    tasks: list[tuple[tuple[str, ...], tuple[tuple[str, str], ...]]] = []
    for combination in itertools.product(*choices.values()):
        overrides = tuple(text for text, _, _ in combination)
        settings = tuple((key, value) for _, key, value in combination)
        given = dict(settings)
        k, p = given.get("parts") or parts, given.get("part") or part
        if p in (None, "null") and str(k).isdigit() and int(k) > 1:
            tasks.extend(((*overrides, f"part={i}"), (*settings, ("part", str(i)))) for i in range(int(k)))
        else:
            tasks.append((overrides, settings))  # a bad parts value is refused with its fix by Cell.from_config
    return [Task(i, overrides, settings) for i, (overrides, settings) in enumerate(tasks)]


def swept_values(tasks: Sequence[Task]) -> dict[str, list[str]]:
    """{key: its values in order} for the keys whose value differs between the tasks of a sweep."""
    values: dict[str, list[str]] = {}
    for task in tasks:
        for key, value in task.settings:
            if value not in values.setdefault(key, []):
                values[key].append(value)
    return {k: v for k, v in values.items() if len(v) > 1}


def short(text: str, limit: int = 24) -> str:
    """A value as a name shows it: a path by its file name, cut to ``limit`` characters."""
    text = Path(text).name if "/" in text else text
    return text if len(text) <= limit else text[: limit - 3] + "..."


def sweep_name(tasks: Sequence[Task]) -> str:
    """The parent run's name: what the sweep varies, e.g. ``sweep S=10,20 eta=0,1 (4 cells)``."""
    swept = " ".join(f"{k.split('.')[-1]}={','.join(short(v, 16) for v in vs)}" for k, vs in swept_values(tasks).items())
    swept = swept if len(swept) <= 90 else swept[:87] + "..."
    return f"sweep {swept} ({len(tasks)} cells)" if swept else f"sweep ({len(tasks)} cells)"


_SHOWN = {"S", "eta", "sampler", "nfe", "dataset", "job", "model", "part"}  # in Cell.run_name (parts share a run)


def run_name(cell: Cell, task: Task, varying: list[str] | dict) -> str:
    """The run name of a sweep's cell: first the swept settings that the standard name (``S=.. eta=..``, sampler,
    dataset, job) does not show, e.g. ``seed=2 S=50 eta=0 digits/sample`` or ``path=b.pt S=3 eta=0 ...``, so the cells
    of one sweep never share a name in MLflow's list."""
    lead = [f"{key.split('.')[-1]}={short(value)}" for key, value in task.settings
            if key in varying and key not in _SHOWN]
    return " ".join(lead + [cell.run_name])


def composed_config(config_loader, config: DictConfig, task: Task) -> DictConfig:
    """The task's config as its launcher composes it, ``hydra`` node included (the launchers use it as composed here)."""
    return config_loader.load_sweep_config(master_config=config, sweep_overrides=list(task.overrides))


def without_hydra(composed: DictConfig) -> DictConfig:
    """A task's config without the ``hydra`` node, as Hydra hands it to the task function."""
    task = composed.copy()
    with open_dict(task):
        del task["hydra"]
    return task


def plan(config: DictConfig, config_loader, arguments: Sequence[str], params: Mapping | None = None) -> list[PlannedTask]:
    """Every task of the sweep (``params``: the preset's ``hydra.sweeper.params``, before the command line's
    ``arguments``), built and named; a HarnessError names the cell and the fix."""
    arguments = [f"{k}={v}" for k, v in (params or {}).items()] + list(arguments)
    tasks = tasks_of(arguments, config.get("parts", 1), config.get("part"), config_loader)
    varying = swept_values(tasks)
    planned = []
    for task in tasks:
        try:
            composed = composed_config(config_loader, config, task)
            cell = Cell.from_config(without_hydra(composed))
        except HarnessError as err:
            raise HarnessError(f"cell {' '.join(task.overrides)}: {err}") from None
        except HydraException as err:  # a config group option that does not exist, a bad value type
            problem = " ".join(str(err).split("\nConfig search path")[0].split())  # its options on one line
            raise HarnessError(f"cell {' '.join(task.overrides)}: {problem}") from None
        planned.append(PlannedTask(task.index, task.overrides, task.settings, cell, run_name(cell, task, varying), composed))
    return planned
