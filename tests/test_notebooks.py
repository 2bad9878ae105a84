"""The tutorial notebooks and ``deepmac-nb demo``.

Fast checks: ``.py`` (source of truth) and ``.ipynb`` hold the same cells, committed
notebooks carry no outputs, every notebook has its badges / install guard / parameters,
and the demo helpers.

``large`` (each starts a kernel): a missing data path stopping a notebook in its first
cells, and every notebook executed in QUICK mode in a fresh kernel (nbclient), checking
the files it is meant to write. They share one quick model through ``$DEEPMAC_NB_CACHE``
(default ``~/.cache/deepmac_nb``): the first notebook that needs it trains it (100 steps in the
suite, ~1 min on 2 cores); later runs reuse it.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
from pathlib import Path

import jupytext
import nbformat
import numpy as np
import pytest
from PIL import Image

from deepmac_nb import demo, tutorial
from deepmac_nb.data import samples

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = sorted(p.stem for p in NOTEBOOK_DIR.glob("*.py"))
REPO = "deepmac-nb/deepmac_nb"


def _cells(nb) -> list[tuple[str, str, list]]:
    return [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in nb.cells]


def _parameters(nb) -> str:
    return next(c.source for c in nb.cells if "parameters" in c.metadata.get("tags", []))


def test_the_demo_runs_every_notebook():
    assert sorted(demo.NOTEBOOKS) == NAMES
    assert len(NAMES) == 6


@pytest.mark.parametrize("name", NAMES)
def test_py_and_ipynb_are_in_sync(name):
    py = jupytext.read(NOTEBOOK_DIR / f"{name}.py")
    ipynb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    assert _cells(py) == _cells(ipynb), f"run `make notebooks-sync` ({name})"


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebooks_hold_no_outputs(name):
    nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, name
    assert "widgets" not in nb.metadata


@pytest.mark.parametrize("name", NAMES)
def test_notebook_has_badges_install_guard_and_parameters(name):
    nb = jupytext.read(NOTEBOOK_DIR / f"{name}.py")
    first = nb.cells[0].source
    path = f"{REPO}/blob/main/notebooks/{name}.ipynb"
    assert f"colab.research.google.com/github/{path}" in first
    assert f"kaggle.com/kernels/welcome?src=https://github.com/{path}" in first
    assert "placeholder" in first  # the org is a placeholder, and says so
    install = nb.cells[1].source
    assert "except ImportError" in install and f"git+https://github.com/{REPO}.git" in install
    params = _parameters(nb)
    assert "QUICK = True" in params and "OUTPUT_DIR = " in params
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "deepmac_nb" in code and not re.search(r"^\s*(def|class) ", code, re.MULTILINE)
    tree = ast.parse(jupytext.writes(nb, "py:percent"), name)  # SyntaxError if not Python
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                for a in n.names}  # fmt: skip
    imported |= {n.module.split(".")[0] for n in ast.walk(tree)
                 if isinstance(n, ast.ImportFrom) and n.module}  # fmt: skip
    assert "deepmac_nb" in imported, name
    quick = [n.value for n in tree.body if isinstance(n, ast.Assign)
             and [getattr(t, "id", None) for t in n.targets] == ["QUICK"]]  # fmt: skip
    assert [getattr(v, "value", None) for v in quick] == [True], name  # assigned once, True
    defined = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    assert not [n.name for n in ast.walk(tree) if isinstance(n, defined)], name


def test_inject_parameters_appends_to_the_parameters_cell():
    nb = jupytext.read(NOTEBOOK_DIR / "00_quickstart.py")
    demo.inject_parameters(nb, {"QUICK": False, "OUTPUT_DIR": "/tmp/x"})
    source = _parameters(nb)
    assert source.index('MODEL = "auto"') < source.index("QUICK = False")
    assert source.endswith("QUICK = False\nOUTPUT_DIR = '/tmp/x'")
    with pytest.raises(ValueError, match="parameters"):
        demo.inject_parameters(nbformat.v4.new_notebook(), {})


# ------------------------------------------------------------------ demo helpers


def test_require_path_names_the_setting(tmp_path):
    assert tutorial.require_path(tmp_path, "X") == tmp_path
    with pytest.raises(tutorial.MissingInput, match=r"DETECTIONS = '/nope.json' does not exist"):
        tutorial.require_path("/nope.json", "DETECTIONS", "hint")
    with pytest.raises(tutorial.MissingInput, match="IMAGES is not set"):
        tutorial.require_path(None, "IMAGES")
    error = tutorial.MissingInput("IMAGES is not set.")
    assert error._render_traceback_() == ["MissingInput: IMAGES is not set."]


def test_trained_step_reads_the_checkpoint_file(tmp_path):
    assert tutorial.trained_step(tmp_path) == 0
    (tmp_path / "checkpoint").write_text(
        'model_checkpoint_path: "ckpt-275"\nall_model_checkpoint_paths: "ckpt-25"\n'
    )
    assert tutorial.trained_step(tmp_path) == 275


def test_quick_model_dirs_live_in_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPMAC_NB_CACHE", str(tmp_path))
    assert tutorial.quick_model_dir(300) == tmp_path / "models" / "deepmac_shapes_quick-300"
    default = f"deepmac_shapes_quick-{tutorial.QUICK_STEPS}"  # 100 in the suite (conftest)
    assert tutorial.quick_model_dir() == tmp_path / "models" / default
    assert tutorial.quick_model_dir(None, "conv2").name == "deepmac_shapes_quick-conv2-full"


def test_auto_model_order_official_coco_quick(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPMAC_NB_CACHE", str(tmp_path))
    monkeypatch.setattr(tutorial, "online", lambda *a, **k: False)
    # An install without the shipped photo model (tests/test_photo_model.py covers it).
    monkeypatch.setattr(tutorial.photo_model, "available", lambda: False)
    assert tutorial.coco_model_dir() == tmp_path / "models" / "deepmac_coco_mini_voc"
    assert tutorial._auto_model(photos=True) == "quick"
    with pytest.raises(tutorial.MissingInput, match="deepmac-nb train --experiment"):
        tutorial.load_predictor("coco")
    tutorial.coco_model_dir().mkdir(parents=True)
    (tutorial.coco_model_dir() / "checkpoint").write_text('model_checkpoint_path: "ckpt-3000"\n')
    assert tutorial._auto_model(photos=True) == "coco"
    assert tutorial._auto_model(photos=False) == "quick"  # shapes notebooks keep shapes
    (tmp_path / "deepmac_1024x1024_coco17.tar.gz").write_bytes(b"")  # a downloaded archive
    assert tutorial._auto_model(photos=True) == "official"


def test_model_banner_warns_on_photos_for_the_offline_models_only():
    quick = f"{tutorial.QUICK_LABEL} (deepmac_shapes_quick-300)"
    assert "Note" not in tutorial.model_banner(quick)  # on shapes the quick model is the tool
    assert "weaker than an inscribed ellipse" in tutorial.model_banner(quick, photos=True)
    coco = tutorial.model_banner(f"{tutorial.COCO_LABEL} (x, flip TTA)", photos=True)
    assert "ties an inscribed ellipse" in coco
    assert "Note" not in tutorial.model_banner("official deepmac (COCO)", photos=True)
    assert "Note" not in tutorial.model_banner("model at /m", photos=True)


def test_adaptable_model_dir_never_picks_a_savedmodel(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPMAC_NB_CACHE", str(tmp_path))
    # An install without the shipped photo model (tests/test_photo_model.py covers it).
    monkeypatch.setattr(tutorial.photo_model, "available", lambda: False)
    monkeypatch.setattr(tutorial, "ensure_quick_model", lambda steps: tmp_path / f"quick-{steps}")
    assert tutorial.adaptable_model_dir("official", 7)[0] == tmp_path / "quick-7"
    with pytest.raises(tutorial.MissingInput, match="No trained COCO-mini model"):
        tutorial.adaptable_model_dir("coco")
    coco = tutorial.coco_model_dir()
    coco.mkdir(parents=True)
    (coco / "checkpoint").write_text('model_checkpoint_path: "ckpt-3000"\n')
    (coco / "params.yaml").write_text("task: {}\n")
    for setting in ("auto", "official", "coco"):
        assert tutorial.adaptable_model_dir(setting)[0] == coco
    saved_model = tmp_path / "exported"
    saved_model.mkdir()
    (saved_model / "saved_model.pb").write_bytes(b"")
    with pytest.raises(tutorial.MissingInput, match="not a trained model dir"):
        tutorial.adaptable_model_dir(str(saved_model))
    assert tutorial.adaptable_model_dir(str(coco))[0] == coco


def test_adapted_model_dir_reuses_a_newer_result_and_redoes_a_stale_one(monkeypatch, tmp_path):
    import os

    from deepmac_nb.train import adapt

    source = tmp_path / "M"
    source.mkdir()
    (source / "checkpoint").write_text('model_checkpoint_path: "ckpt-5"\n')
    calls = []

    def fake_adapt(model_dir, detections, images, out, options):
        calls.append((Path(model_dir), options.steps, options.min_conf, options.categories))
        out.mkdir(parents=True)
        summary = {"images": 1, "boxes": 2, "min_conf": options.min_conf, "steps": options.steps,
                   "detections": str(Path(detections).resolve())}  # fmt: skip
        (out / adapt.SUMMARY_FILE).write_text(json.dumps(summary))
        return summary

    monkeypatch.setattr(adapt, "adapt", fake_adapt)
    args = (source, tmp_path / "md.json", tmp_path, tmp_path / "adapted")
    out = tutorial.adapted_model_dir(*args, steps=3, categories=["animal"])
    assert out == tmp_path / "adapted" / "M-adapted-3"
    assert calls == [(source, 3, 0.8, ("animal",))]
    assert tutorial.adapted_model_dir(*args, steps=3) == out and len(calls) == 1  # reused
    assert tutorial.adapted_model_dir(*args, steps=3, min_conf=0.5) == out and len(calls) == 2
    other = (source, tmp_path / "other.json", *args[2:])
    assert tutorial.adapted_model_dir(*other, steps=3, min_conf=0.5) == out and len(calls) == 3
    later = (out / adapt.SUMMARY_FILE).stat().st_mtime + 10
    os.utime(source / "checkpoint", (later, later))  # the source was trained again
    assert tutorial.adapted_model_dir(*other, steps=3, min_conf=0.5) == out and len(calls) == 4
    assert sorted(p.name for p in out.parent.iterdir()) == ["M-adapted-3"]  # no stale copy


def test_iwildcam_inputs_given_missing_and_kaggle(tmp_path, monkeypatch):
    md = tmp_path / "md.json"
    md.write_text("{}")
    assert tutorial.iwildcam_inputs(md, tmp_path)[:2] == (md, tmp_path)
    with pytest.raises(tutorial.MissingInput, match="IMAGES_DIR is not set"):
        tutorial.iwildcam_inputs(md, None)
    competition = tmp_path / "kaggle" / "iwildcam2022-fgvc9"
    (competition / "metadata").mkdir(parents=True)
    (competition / "train" / "train").mkdir(parents=True)
    (competition / "train" / "train" / "abc.jpg").write_bytes(b"jpg")
    detections = {"images": [{"id": "abc", "detections": []}]}
    (competition / "metadata" / "iwildcam2022_mdv4_detections.json").write_text(
        json.dumps(detections)
    )
    found = tutorial.find_kaggle_iwildcam(tmp_path / "kaggle")
    assert found == (
        competition / "metadata" / "iwildcam2022_mdv4_detections.json",
        competition / "train" / "train",
    )
    assert tutorial.find_kaggle_iwildcam(tmp_path / "nothing") is None
    monkeypatch.setattr(tutorial, "KAGGLE_INPUT", tmp_path / "nothing")
    monkeypatch.setenv(samples.ENV_VAR, str(tmp_path / "no-data"))
    with pytest.raises(tutorial.MissingInput, match="No camera-trap data"):
        tutorial.iwildcam_inputs()


def test_coco_and_eval_inputs_check_given_paths(tmp_path):
    with pytest.raises(tutorial.MissingInput, match="COCO_IMAGES is not set"):
        tutorial.coco_inputs(tmp_path, None)
    assert tutorial.coco_inputs(tmp_path, tmp_path)[0][1:] == (tmp_path, tmp_path)
    with pytest.raises(tutorial.MissingInput, match="ANNOTATIONS"):
        tutorial.eval_inputs(tmp_path / "val.json", tmp_path)


def _ablation_results():
    gt = {"seen": {"mean": 30.0}, "unseen": {"mean": 15.0}}
    return {
        "splits": ["seen", "unseen"],
        "heads": {"fakehead": {"params": 1234, "gt": gt, "detected": {"unseen": {"mean": 2.0}}}},
        "baselines": {"ellipse": {"seen": {"AP": 27.8}, "unseen": {"AP": 11.1}}},
    }


def test_ablation_table_reads_the_benchmark_layout_and_falls_back():
    rows = tutorial.ablation_table(_ablation_results())
    assert rows[0] == {
        "head": "fakehead",
        "params": 1234,
        "seen AP": 30.0,
        "unseen AP": 15.0,
        "unseen AP (detected)": 2.0,
    }
    assert rows[1]["head"] == "ellipse (baseline)" and rows[1]["unseen AP"] == 11.1
    generic = tutorial.ablation_table({"a": {"mask": {"unseen": {"AP": 3}}}, "note": "x"})
    assert generic == [{"name": "a", "mask/unseen/AP": 3}]
    assert tutorial.results_rows({"rows": [{"x": 1, "y": [1, 2]}]}) == [{"x": 1}]


def test_markdown_figures_are_inlined_for_the_html_export(tmp_path):
    (tmp_path / "fig.png").write_bytes(b"\x89PNG-bytes")
    text = "see ![a figure](fig.png), ![gone](nope.png) and ![web](https://x/y.png)"
    out = tutorial.embed_markdown_images(text, tmp_path)
    assert "![a figure](data:image/png;base64,iVBORy1ieXRlcw==)" in out
    assert "![gone](nope.png)" in out and "![web](https://x/y.png)" in out


def test_selected_notebooks_and_summary_lines(tmp_path):
    assert demo._selected(None) == list(demo.NOTEBOOKS)
    assert demo._selected("03_evaluate.py, 00_quickstart") == ["03_evaluate", "00_quickstart"]
    with pytest.raises(ValueError, match="unknown notebooks"):
        demo._selected("99_nope")
    metrics = {
        "protocols": {"box_prompted": {"mask": {"seen": {"AP": 33.6}, "unseen": {"AP": 16.0}}}},
        "baselines": {"ellipse": {"mask": {"seen": {"AP": 27.8}, "unseen": {"AP": 11.1}}}},
        "speed": {"images_per_s": 17.3},
    }
    (tmp_path / "03_evaluate").mkdir()
    (tmp_path / "03_evaluate" / "metrics.json").write_text(json.dumps(metrics))
    stages = [{"notebook": "03_evaluate", "status": "ok", "seconds": 1.0, "error": None}]
    part = tmp_path / "05_partial_supervision"
    part.mkdir()
    rows = [{"head": "hourglass20", "seen AP": 40.0, "unseen AP": 30.0}]
    (part / "head_comparison.json").write_text(json.dumps(rows))
    summary = demo.summarize(tmp_path, stages)
    text = demo.format_summary(summary)
    assert "seen 33.6 | unseen 16.0 | unseen/seen 0.48 | 17.3 images/s" in text
    assert "baseline ellipse  seen 27.8 | unseen 11.1 | model unseen +4.9 vs this" in text
    assert summary["unseen_margin"] == {"ellipse": 4.9}
    assert summary["head_comparison"][0]["unseen/seen"] == 0.75
    assert "hourglass20" in text and "unseen/seen 0.75" in text
    assert summary["reference_heads"] is None and "shipped" not in text
    assert "FAILED" not in text


MISSING_PATHS = {
    "00_quickstart": "IMAGE",
    "01_data_prep": "COCO_ANNOTATIONS",
    "03_evaluate": "ANNOTATIONS",
    "04_iwildcam_visualize": "DETECTIONS",
    "05_partial_supervision": "RESULTS",
}


@pytest.mark.parametrize(("name", "setting"), sorted(MISSING_PATHS.items()))
@pytest.mark.large
def test_missing_data_path_stops_in_the_first_cells(name, setting, tmp_path):
    """A wrong path ends the run in the imports cell with one line naming the setting."""
    params = {"QUICK": True, setting: "/nonexistent/input.json", "OUTPUT_DIR": str(tmp_path)}
    with pytest.raises(demo.NotebookFailed) as info:
        demo.execute_notebook(NOTEBOOK_DIR / f"{name}.py", params, timeout=300)
    message = str(info.value)
    assert "cell 3 raised MissingInput" in message and setting in message
    outputs = [o for c in info.value.nb.cells for o in c.get("outputs", [])]
    error = next(o for o in outputs if o.output_type == "error")
    assert error.traceback == [f"MissingInput: {error.evalue}"]  # no stack trace
    assert f"Set {setting} in the parameters cell" in error.evalue


# ----------------------------------------------------------- executed notebooks


def _executed(name: str, tmp_path: Path, **params) -> tuple[Path, str]:
    """Runs notebook ``name`` in QUICK mode into ``tmp_path/name``; returns that folder
    and the text of all its outputs."""
    out = tmp_path / name
    params = {"QUICK": True, "OUTPUT_DIR": str(out), **demo.DEMO_PARAMETERS.get(name, {}), **params}
    nb = demo.execute_notebook(NOTEBOOK_DIR / f"{name}.py", params, timeout=900)
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    texts = [o.get("text", "") for o in outputs] + [
        o.get("data", {}).get(kind, "") for o in outputs for kind in ("text/plain", "text/markdown")
    ]
    return out, "\n".join(texts)


@pytest.mark.large
@pytest.mark.timeout(900)
def test_01_data_prep_writes_tfrecords_and_split_counts(tmp_path):
    out, text = _executed("01_data_prep", tmp_path)
    assert "instances per split" in text
    counts = json.loads((out / "splits.json").read_text())
    assert counts["shapes"]["seen"] > 0 and counts["shapes"]["unseen"] > 0
    # 01 shows the very set the quick experiment trains on, not a set of its own.
    assert not (out / "shapes").exists()
    shapes_root = tutorial.quick_eval_set()[0].parent
    assert list((shapes_root / "tfrecords").glob("train-*.tfrecord"))
    if samples.available():
        assert counts["val_dev"] == {"voc": 302, "non_voc": 141}
        assert list((out / "coco").glob("val_dev-*.tfrecord"))


@pytest.mark.large
@pytest.mark.timeout(900)
def test_02_train_trains_the_shared_quick_model(tmp_path):
    out, text = _executed("02_train", tmp_path)
    assert "OneDeviceStrategy" in text and "step before: " in text
    assert tutorial.trained_step(tutorial.quick_model_dir()) >= tutorial.QUICK_STEPS
    assert (out / "loss_curves.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.large
@pytest.mark.timeout(900)
def test_00_quickstart_draws_masks(tmp_path):
    out, text = _executed("00_quickstart", tmp_path)
    assert "Model used for the masks below:** quick shapes model" in text
    assert "masks (4, 128, 128) float32" in text
    picture = np.asarray(Image.open(out / "masks.png"))
    assert picture.shape == (128, 128, 3)


@pytest.mark.large
@pytest.mark.timeout(900)
def test_03_evaluate_writes_split_metrics_for_model_and_baselines(tmp_path):
    out, text = _executed("03_evaluate", tmp_path)
    assert "mask AP" in text
    metrics = json.loads((out / "metrics.json").read_text())
    mask = metrics["protocols"]["box_prompted"]["mask"]
    assert 0 < mask["unseen"]["AP"] < mask["seen"]["AP"] <= 100
    assert set(metrics["baselines"]) == {"box", "ellipse", "grabcut"}
    assert metrics["speed"]["images_per_s"] > 0 and metrics["speed"]["images"] == 40
    for name in ("method_comparison.png", "unseen_examples.png"):
        assert (out / name).is_file()


@pytest.mark.large
@pytest.mark.timeout(900)
@pytest.mark.skipif(not samples.available(), reason="camera-trap sample data not found")
def test_04_iwildcam_writes_label_pngs(tmp_path):
    from deepmac_nb.inference import megadetector

    out, text = _executed("04_iwildcam_visualize", tmp_path, ADAPT_STEPS=3)
    assert "camera-trap sample set" in text and "images written" in text
    assert "beats an inscribed ellipse" in text  # the demo's model: the shipped photo model
    # section 4: the shipped photo model adapted on the 12 confident MDv5 boxes of 7 photos
    (adapted,) = (out / "adapted").iterdir()
    assert adapted.name == "deepmac_coco_mini_voc_img-adapted-3"
    assert (adapted / "ckpt-3.index").is_file()
    assert (out / "adapt_before_after.png").stat().st_size > 10_000  # the sheet is drawn
    assert "adapted on 7 images, 12 boxes" in text
    sample = samples.camera_traps("mdv5")
    entries = megadetector.read_detections(sample.detections, sample.images).images[:12]
    for entry in entries:
        labels = np.asarray(Image.open(out / "iwildcam" / "instance_masks" / f"{entry.key}.png"))
        kept = [d for d in entry.detections if d.conf >= 0.2]
        assert labels.dtype == np.uint8 and labels.ndim == 2
        assert set(np.unique(labels).tolist()) <= set(range(len(kept) + 1)), entry.key
    assert json.loads((out / "iwildcam" / "masks_coco_rle.json").read_text())["annotations"]


@pytest.mark.large
@pytest.mark.timeout(900)
def test_05_partial_supervision_compares_heads_and_renders_results(tmp_path):
    results = tmp_path / "ablation.json"
    results.write_text(json.dumps(_ablation_results()))
    out, text = _executed("05_partial_supervision", tmp_path, RESULTS=str(results))
    assert "fakehead" in text  # the ablation results were rendered
    heads = {r["head"]: r["params"] for r in json.loads((out / "head_params.json").read_text())}
    assert len(heads) == 13 and heads["hourglass100"] == 47_276_545
    rows = json.loads((out / "head_comparison.json").read_text())
    assert [r["head"] for r in rows] == ["hourglass20", "conv2", "ellipse (no learning)"]
    assert all("unseen/seen" in r and r["training"] for r in rows)
    assert (out / "unseen_by_head.png").is_file()
    from deepmac_nb import reference_models

    reference = json.loads((out / "reference_comparison.json").read_text())
    expected = [*reference_models.available(), "box", "ellipse", "grabcut"]
    assert [r["head"] for r in reference] == expected
    assert (out / "unseen_by_head_reference.png").is_file()


@pytest.mark.large
@pytest.mark.timeout(900)
def test_demo_command_writes_html_and_a_summary(tmp_path, capsys):
    args = argparse.Namespace(
        out=str(tmp_path / "demo"), quick=True, only="01_data_prep", timeout=600
    )
    assert demo.run(args) == 0
    printed = capsys.readouterr().out
    assert "[1/1] 01_data_prep: running" in printed and "[1/1] 01_data_prep: ok" in printed
    html = (tmp_path / "demo" / "html" / "01_data_prep.html").read_text()
    assert "instances per split" in html
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["stages"][0]["status"] == "ok"
