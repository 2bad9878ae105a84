"""Installing deepmac_nb in a notebook: the repository address, the pinned release, and
which TensorFlow build each runtime needs. Standard library only (it runs right after
``pip install --no-deps`` of the package, before its dependencies exist).

The address lives here and in ``pyproject.toml`` (``[project.urls]``); the notebooks'
badges and install cells carry a copy that ``python -m deepmac_nb.install --sync
notebooks/*.py notebooks/*.ipynb`` rewrites (a test checks they agree), so publishing
under another address changes ``REPOSITORY`` and the pyproject line, then one command.

``install_plan`` is the pure decision (unit-tested without network):

* a **TPU runtime on Colab**: Colab TPU VMs no longer preinstall TensorFlow and
  ``tensorflow~=2.20`` from PyPI has no TPU support, so after the package (which pulls the
  plain build with the other dependencies) the matched ``tensorflow-tpu`` 2.20.0 +
  ``libtpu`` pair is force-installed over it from Google's libtpu index;
* a **TPU runtime on Kaggle** that already has a ``tensorflow-tpu`` 2.20.x build keeps it
  (reinstalled, same version, after the dependencies); other TPU runtimes get the pair;
* **anywhere else** (CPU, GPU, a checkout): the package with its pinned dependencies; a
  preinstalled TensorFlow 2.20.x already satisfies them and is kept by pip.

Not run here: the TPU steps need a TPU runtime (none was available while writing this);
the plan is tested as data, the commands are the ones Google documents for TF on TPU VMs.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path

REPOSITORY = "deepmac-nb/deepmac_nb"  # placeholder GitHub org/repository until published
REPOSITORY_URL = f"https://github.com/{REPOSITORY}"
TAG = "v0.1.0"  # the release the notebooks install: "v" + deepmac_nb.__version__
TF_TPU_VERSION = "2.20.0"
# tensorflow-tpu 2.20.0 declares libtpu~=0.0.14: its floor is the build it was made with.
TPU_PACKAGES = (f"tensorflow-tpu=={TF_TPU_VERSION}", "libtpu==0.0.14")
LIBTPU_INDEX = "https://storage.googleapis.com/libtpu-tf-releases/index.html"
_SPEC_RE = re.compile(r"deepmac_nb @ git\+https://github\.com/[\w.\-]+/[\w.\-]+?\.git(@[\w.\-]+)?")
_BADGE_RE = re.compile(r"(github|src=https://github\.com)/[\w.\-]+/[\w.\-]+/blob/")


def install_spec(tag: str = TAG) -> str:
    """The pip requirement the notebooks install: the repository at ``tag``."""
    return f"deepmac_nb @ git+{REPOSITORY_URL}.git@{tag}"


def badge_links(notebook: str) -> tuple[str, str]:
    """``(Colab, Kaggle)`` addresses that open ``notebooks/<notebook>.ipynb``."""
    path = f"{REPOSITORY}/blob/main/notebooks/{notebook}.ipynb"
    return (
        f"https://colab.research.google.com/github/{path}",
        f"https://kaggle.com/kernels/welcome?src=https://github.com/{path}",
    )


def sync_text(text: str) -> str:
    """``text`` (a notebook, .py or .ipynb) with its install spec and badge addresses
    rewritten to ``install_spec()`` / ``REPOSITORY``."""
    text = _SPEC_RE.sub(install_spec(), text)
    return _BADGE_RE.sub(lambda m: f"{m.group(1)}/{REPOSITORY}/blob/", text)


@dataclasses.dataclass(frozen=True)
class Runtime:
    """Where a notebook runs: ``platform`` (``colab``, ``kaggle`` or ``local``), whether a
    TPU is attached, and the installed versions of ``tensorflow``/``tensorflow-tpu``/
    ``libtpu`` (absent = not installed)."""

    platform: str
    tpu: bool
    installed: Mapping[str, str] = dataclasses.field(default_factory=dict)


def detect_runtime(environ: Mapping[str, str] | None = None, dev: Path = Path("/dev")):
    """The ``Runtime`` of this process, from environment variables and ``/dev/accel*``."""
    environ = os.environ if environ is None else environ
    if "COLAB_RELEASE_TAG" in environ or "COLAB_GPU" in environ:
        platform = "colab"
    elif "KAGGLE_KERNEL_RUN_TYPE" in environ or "KAGGLE_URL_BASE" in environ:
        platform = "kaggle"
    else:
        platform = "local"
    tpu_vars = ("TPU_ACCELERATOR_TYPE", "COLAB_TPU_ADDR", "TPU_NAME", "TPU_WORKER_ID")
    tpu = any(environ.get(k) for k in tpu_vars) or any(dev.glob("accel[0-9]*"))
    installed = {}
    for name in ("tensorflow", "tensorflow-tpu", "libtpu"):
        try:
            installed[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return Runtime(platform, bool(tpu), installed)


def install_plan(runtime: Runtime, spec: str | None = None) -> list[list[str]]:
    """The ``pip install`` argument lists for ``runtime`` (module docstring), in order."""
    steps = [[spec or install_spec()]]
    if not runtime.tpu:
        return steps
    kept = runtime.installed.get("tensorflow-tpu", "")
    if runtime.platform == "kaggle" and kept.startswith(TF_TPU_VERSION.rsplit(".", 1)[0] + "."):
        packages = [f"tensorflow-tpu=={kept}"]
        if "libtpu" in runtime.installed:
            packages.append(f"libtpu=={runtime.installed['libtpu']}")
    else:
        packages = list(TPU_PACKAGES)
    steps.append(["--no-deps", "--force-reinstall", *packages, "-f", LIBTPU_INDEX])
    return steps


def describe(runtime: Runtime, plan: Sequence[Sequence[str]]) -> str:
    """One line saying which TensorFlow build the plan gives this runtime."""
    where = f"{runtime.platform}{' TPU' if runtime.tpu else ''}"
    if len(plan) == 1:
        return f"install: {where} runtime -> deepmac_nb {TAG} with its pinned TensorFlow"
    builds = " + ".join(p for p in plan[-1] if "==" in p)
    return f"install: {where} runtime -> deepmac_nb {TAG}, then {builds}"


def run(spec: str | None = None, runtime: Runtime | None = None) -> list[list[str]]:
    """Detects the runtime, prints ``describe``, runs the plan with this Python's pip."""
    runtime = runtime or detect_runtime()
    plan = install_plan(runtime, spec)
    print(describe(runtime, plan))
    for args in plan:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *args], check=True)
    return plan


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m deepmac_nb.install --sync FILE...``: rewrites addresses in place."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "--sync":
        print(describe(detect_runtime(), install_plan(detect_runtime())))
        return 0
    for name in argv[1:]:
        path = Path(name)
        text = path.read_text(encoding="utf-8")
        if sync_text(text) != text:
            path.write_text(sync_text(text), encoding="utf-8")
            print(f"updated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
