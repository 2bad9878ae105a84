"""The notebooks' install: one repository address, a pinned release, and which TensorFlow
build each runtime gets (the TPU plan, as data: no network, no TPU here)."""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import pytest

import deepmac_nb
from deepmac_nb import install

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))
LOCAL = install.Runtime("local", tpu=False, installed={"tensorflow": "2.20.0"})


def test_the_address_is_the_pyproject_one_and_the_tag_the_version():
    pyproject = (ROOT / "pyproject.toml").read_text()  # tomllib is 3.11+; 3.10 is supported
    urls = pyproject.split("[project.urls]")[1].split("\n[")[0]
    assert re.findall(r'^Repository = "(.*)"$', urls, re.MULTILINE) == [install.REPOSITORY_URL]
    version = re.search(r'^version = "(.*)"$', pyproject, re.MULTILINE).group(1)
    assert install.TAG == f"v{deepmac_nb.__version__}" == f"v{version}"
    assert install.install_spec().endswith(f"{install.REPOSITORY}.git@{install.TAG}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_installs_the_pinned_release_and_links_the_address(path):
    nb = jupytext.read(path)
    colab, kaggle = install.badge_links(path.stem)
    assert colab in nb.cells[0].source and kaggle in nb.cells[0].source
    assert install.install_spec() in nb.cells[1].source, "run python -m deepmac_nb.install --sync"
    text = path.read_text()
    assert install.sync_text(text) == text


def test_sync_rewrites_an_old_address_and_tag():
    old = (
        "[badge](https://colab.research.google.com/github/old-org/old_repo/blob/main/x.ipynb)\n"
        "pip install 'deepmac_nb @ git+https://github.com/old-org/old_repo.git'\n"
        '"deepmac_nb @ git+https://github.com/old-org/old_repo.git@v0.0.1"\n'
    )
    new = install.sync_text(old)
    assert f"github/{install.REPOSITORY}/blob/main/x.ipynb" in new
    assert new.count(install.install_spec()) == 2 and "old-org" not in new


def test_cpu_gpu_and_checkout_runtimes_get_the_package_alone():
    assert install.install_plan(LOCAL) == [[install.install_spec()]]
    gpu = install.Runtime("colab", tpu=False, installed={"tensorflow": "2.19.0"})
    assert install.install_plan(gpu, "SPEC") == [["SPEC"]]  # pip replaces 2.19 by ~=2.20


def test_colab_tpu_gets_the_matched_tpu_build_over_the_plain_one():
    plan = install.install_plan(install.Runtime("colab", tpu=True), "SPEC")
    assert plan[0] == ["SPEC"]
    assert plan[1][:2] == ["--no-deps", "--force-reinstall"]
    assert {"tensorflow-tpu==2.20.0", "libtpu==0.0.14"} <= set(plan[1])
    assert plan[1][-2:] == ["-f", install.LIBTPU_INDEX]
    assert "tensorflow-tpu==2.20.0" in install.describe(install.Runtime("colab", True), plan)


def test_kaggle_tpu_keeps_a_compatible_preinstalled_build():
    kept = install.Runtime("kaggle", True, {"tensorflow-tpu": "2.20.1", "libtpu": "0.0.17"})
    plan = install.install_plan(kept, "SPEC")
    assert {"tensorflow-tpu==2.20.1", "libtpu==0.0.17"} <= set(plan[1])
    old = install.Runtime("kaggle", True, {"tensorflow-tpu": "2.18.0"})
    assert "tensorflow-tpu==2.20.0" in install.install_plan(old, "SPEC")[1]


def test_runtime_detection_from_the_environment(tmp_path):
    (tmp_path / "accel0").touch()
    assert install.detect_runtime({"COLAB_RELEASE_TAG": "x"}, tmp_path).tpu
    colab = install.detect_runtime({"COLAB_RELEASE_TAG": "x"}, tmp_path / "none")
    assert (colab.platform, colab.tpu) == ("colab", False)
    kaggle = install.detect_runtime({"KAGGLE_KERNEL_RUN_TYPE": "Batch", "TPU_NAME": "v3"})
    assert (kaggle.platform, kaggle.tpu) == ("kaggle", True)
    assert install.detect_runtime({}, tmp_path / "none").platform == "local"


def test_run_prints_the_plan_and_calls_pip(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(install.subprocess, "run", lambda args, check: calls.append(args))
    install.run("SPEC", install.Runtime("colab", tpu=True))
    assert "colab TPU runtime" in capsys.readouterr().out
    assert [c[1:4] for c in calls] == [["-m", "pip", "install"]] * 2
    assert calls[1][-2:] == ["-f", install.LIBTPU_INDEX]
