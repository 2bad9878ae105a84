"""The package's outer contract: pins agree, the CLI answers, the layout exists."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import deepmac_nb
from deepmac_nb import cli

ROOT = Path(__file__).resolve().parents[1]


def _norm(req: str) -> str:
    return re.sub(r"\s+", "", req).lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_norm(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_list = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {_norm(r) for r in pip_list if not r.startswith("-e")}
    assert listed == wanted, (
        f"only in environment.yml: {listed - wanted}; only in pyproject: {wanted - listed}"
    )


def test_core_pins():
    deps = {
        _norm(r)
        for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    assert "tensorflow~=2.20.0" in deps
    assert "tf-models-official==2.20.0" in deps
    assert "tf-keras~=2.20.0" in deps


def test_cli_version_and_help():
    out = subprocess.run(
        [sys.executable, "-m", "deepmac_nb.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert deepmac_nb.__version__ in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "deepmac_nb.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for name in cli.COMMANDS:
        assert name in out.stdout


# Arguments each command's --help must list (a new command declares its own here).
OWN_ARGUMENTS = {
    "train": ("--experiment", "--model-dir", "--mask-head", "--steps", "--seed", "--deterministic"),
    "prepare": ("coco", "shapes"),
    "evaluate": ("--annotations", "--method", "--boxes", "--flip-tta", "--max-images"),
    "export": ("--model-dir", "--format", "--max-boxes"),
    "segment": ("--detections", "--min-conf", "--categories", "--overlays"),
    "adapt": ("--detections", "--train-backbone", "--batch-size"),
    "demo": ("--only", "--timeout"),
}


def test_every_command_declares_its_arguments():
    assert set(OWN_ARGUMENTS) == set(cli.COMMANDS)


@pytest.mark.parametrize("name", sorted(OWN_ARGUMENTS))
def test_command_help_lists_its_own_arguments(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([name, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: deepmac-nb {name} ")
    for argument in OWN_ARGUMENTS[name]:
        assert argument in out, f"{name} --help lacks {argument}"


@pytest.mark.parametrize("name", sorted(OWN_ARGUMENTS))
def test_bad_invocation_exits_2_with_one_error_line(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([name, "--no-such-option"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith("deepmac-nb"), err
    assert err[-1] == errors[0] and err[0].startswith("usage: deepmac-nb")


def test_top_level_layout():
    for name in [
        "deepmac_nb",
        "notebooks",
        "data",
        "tests",
        "benchmarks",
        "docs",
        "environment.yml",
        "pyproject.toml",
        "README.md",
        "Makefile",
        ".ci/run",
        "jupytext.toml",
    ]:
        assert (ROOT / name).exists(), name
    assert "make test" in (ROOT / ".ci/run").read_text()
