"""W&B sweep files (``configs/sweeps/*.yaml``), checked offline.

Sweeps need the W&B server (``wandb sweep`` refuses offline), and the ``sweeps``
engine pins numpy<2, so this test does what the server and the agent would do:
it checks each file's structure, proposes runs from its parameters (every value
of a list, the bounds and seeded samples of a distribution), builds each run's
command line as the agent does (``${args}`` -> ``--name=value``, then the
command's own shell expansion), and parses it with the femurseg CLI
(``run_lightning_cli(..., run=False)``: model, data module and trainer are
instantiated, nothing is trained or read).
"""

from __future__ import annotations

import math
import os
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SWEEPS = sorted((REPO / "configs" / "sweeps").glob("*.yaml"))

#: metrics that ``femurseg fit`` logs, with the direction that is better
LOGGED_METRICS = {"val/dice": "maximize", "val/dice_min": "maximize", "train/loss": "minimize"}
METHODS = {"grid", "random", "bayes"}
#: distribution -> keys it requires (the W&B sweep configuration schema)
DISTRIBUTIONS = {
    "constant": {"value"},
    "categorical": {"values"},
    "int_uniform": {"min", "max"},
    "uniform": {"min", "max"},
    "log_uniform_values": {"min", "max"},
    "q_uniform": {"min", "max"},
    "q_log_uniform_values": {"min", "max"},
    "normal": {"mu", "sigma"},
    "log_normal": {"mu", "sigma"},
}
SAMPLES_PER_DISTRIBUTION = 3


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


# proposing runs ---------------------------------------------------------------
def parameter_values(spec: dict[str, Any], rng: random.Random) -> list[Any]:
    """Values to try for one parameter: every listed value, or bounds plus seeded samples."""
    if "value" in spec:
        return [spec["value"]]
    if "values" in spec:
        return list(spec["values"])
    low, high = spec["min"], spec["max"]
    kind = spec["distribution"]
    if kind == "int_uniform":
        return [low, high, *(rng.randint(low, high) for _ in range(SAMPLES_PER_DISTRIBUTION))]
    if kind.startswith("log_uniform") or kind.startswith("q_log_uniform"):
        draw = lambda: math.exp(rng.uniform(math.log(low), math.log(high)))  # noqa: E731
    else:
        draw = lambda: rng.uniform(low, high)  # noqa: E731
    return [float(low), float(high), *(draw() for _ in range(SAMPLES_PER_DISTRIBUTION))]


def propose_runs(config: dict[str, Any], seed: int = 0) -> list[dict[str, Any]]:
    """A covering set of runs: run ``i`` takes value ``i mod n`` of each parameter.

    Every value of every parameter appears in at least one run, and values of
    different parameters are combined (as a random or Bayesian search would).
    """
    rng = random.Random(seed)
    values = {name: parameter_values(spec, rng) for name, spec in config["parameters"].items()}
    count = max(len(v) for v in values.values())
    return [{name: options[i % len(options)] for name, options in values.items()} for i in range(count)]


def agent_args(run: dict[str, Any]) -> list[str]:
    """``${args}`` as the W&B agent writes it: ``--name=value``."""
    return [f"--{name}={value}" for name, value in run.items()]


def fit_arguments(command: list[str], args: list[str], run_id: str) -> list[str]:
    """The ``femurseg fit`` arguments the command runs, expanded by bash as under the agent."""
    expanded: list[str] = []
    for item in command:
        expanded += args if item == "${args}" else [item]
    assert expanded[:2] == ["bash", "-c"], "sweep commands run through 'bash -c' (see docs/sweeps.md)"
    script = expanded[2]
    prefix = "exec femurseg fit "
    assert script.startswith(prefix), script
    printing = "printf '%s\\0' " + script[len(prefix):]
    result = subprocess.run(
        ["bash", "-c", printing, *expanded[3:]], env={**os.environ, "WANDB_RUN_ID": run_id},
        capture_output=True, text=True, check=True,
    )
    return result.stdout.split("\0")[:-1]


# the files ------------------------------------------------------------------
def test_there_are_sweeps():
    assert {p.stem for p in SWEEPS} >= {"lr", "architecture"}


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_is_well_formed(path: Path):
    config = load(path)
    assert config["method"] in METHODS
    metric = config["metric"]
    assert metric["name"] in LOGGED_METRICS, f"{metric['name']} is not logged by femurseg fit"
    assert metric["goal"] == LOGGED_METRICS[metric["name"]]
    assert config["parameters"], "a sweep needs parameters"
    for name, spec in config["parameters"].items():
        assert name.replace(".", "").replace("_", "").isalnum(), name
        given = {"value", "values", "distribution"} & set(spec)
        assert len(given) == 1 or (given == {"values", "distribution"} and spec["distribution"] == "categorical"), name
        if "values" in spec:
            assert isinstance(spec["values"], list) and spec["values"], name
        if "distribution" in spec:
            assert spec["distribution"] in DISTRIBUTIONS, name
            assert DISTRIBUTIONS[spec["distribution"]] <= set(spec), name
            if {"min", "max"} <= set(spec):
                assert spec["min"] < spec["max"], name
            if "log" in spec["distribution"] and "min" in spec:
                assert spec["min"] > 0, name
            assert config["method"] != "grid", f"{name}: a grid sweep takes only value/values"
    if "early_terminate" in config:
        assert config["early_terminate"]["type"] == "hyperband"
        assert {"min_iter", "max_iter"} & set(config["early_terminate"])
    command = config["command"]
    assert isinstance(command, list) and "${args}" in command
    script = " ".join(command)
    assert "--wandb online" in script and "--data.fold" in script and "$WANDB_RUN_ID" in script


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_registered_choices(path: Path):
    from femurseg.data.augment import PRESETS
    from femurseg.models import LOSSES, NETS

    registered = {"model.net": NETS.names(), "model.loss": LOSSES.names(), "data.augmentation": PRESETS}
    for name, spec in load(path)["parameters"].items():
        if name in registered:
            unknown = set(spec.get("values", [spec.get("value")])) - set(registered[name])
            assert not unknown, f"{path.name}: {name} values {sorted(unknown)} are not registered"


def _same(parsed: Any, value: Any) -> bool:
    if isinstance(parsed, (tuple, list)) and not isinstance(value, (tuple, list)):
        return all(_same(p, value) for p in parsed)
    if isinstance(value, float):
        return math.isclose(float(parsed), value, rel_tol=1e-12)
    return parsed == value


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_every_proposed_run_parses(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from femurseg.cli import run_lightning_cli

    monkeypatch.chdir(REPO)  # the sweep commands name configs relative to the repository root
    config = load(path)
    runs = propose_runs(config)
    assert len(runs) >= 2
    for index, run in enumerate(runs):
        args = fit_arguments(config["command"], agent_args(run), run_id=f"test{index}")
        assert f"runs/sweeps/test{index}" in args  # each run gets its own folder
        cli = run_lightning_cli([*args, "--wandb", "disabled", "--runs_root", str(tmp_path)], run=False)
        for name, value in run.items():
            assert _same(cli.config[name], value), f"{path.name} run {index}: {name}={value} parsed as {cli.config[name]}"
        if "model.net" in run:
            assert cli.model.hparams.net == run["model.net"]
    assert not any(tmp_path.iterdir()), "parsing a run must not write anything"
