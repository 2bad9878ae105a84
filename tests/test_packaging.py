"""The package's outer contract: pins agree, the CLI answers, the layout exists."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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


def test_every_cli_command_module_builds_its_parser():
    for name in cli.COMMANDS:
        parser = cli.build_parser(selected=name)
        assert parser.prog == "deepmac-nb"


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
