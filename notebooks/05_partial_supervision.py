# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# <!-- The badges point at "deepmac-nb/deepmac_nb", a placeholder GitHub org/repository:
#      replace it with the project's real address when publishing. -->
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/deepmac-nb/deepmac_nb/blob/main/notebooks/05_partial_supervision.ipynb)
# [![Open in Kaggle](https://kaggle.com/static/images/open-in-kaggle.svg)](https://kaggle.com/kernels/welcome?src=https://github.com/deepmac-nb/deepmac_nb/blob/main/notebooks/05_partial_supervision.ipynb)
#
# # 05 · The lesson: partial supervision, and why the mask head matters
#
# Masks are expensive to label and boxes are cheap. *Partially supervised* instance
# segmentation asks: if only some classes have masks, can a model segment the others?
# Birodkar et al. (ICCV 2021) found that the answer depends surprisingly little on
# clever losses or extra modules and surprisingly much on one plain design choice: **the
# architecture of the mask head**. This notebook
#
# 1. shows what partial supervision does to the training signal,
# 2. puts the mask heads side by side (size, depth),
# 3. shows the ablation results when they have been produced,
# 4. trains a shallow head next to the deep one and compares their unseen-class masks.

# %%
# Colab / Kaggle: installs deepmac_nb from its repository; its pyproject pins TensorFlow and
# Model Garden (2.20). Does nothing where deepmac_nb is importable (a checkout after
# `make venv`). If TensorFlow was imported before the install, restart the session once.
try:
    import deepmac_nb
except ImportError:
    from IPython import get_ipython

    get_ipython().run_line_magic(
        "pip", "install -q 'deepmac_nb @ git+https://github.com/deepmac-nb/deepmac_nb.git@v0.1.0'"
    )

# %% tags=["parameters"]
QUICK = True  # True: few steps and 40 evaluation images; False: full quick-experiment runs
# Heads trained here next to the shared model's hourglass20 (each ~1-2 min in QUICK mode).
COMPARE_HEADS = ("conv2",)
# Ablation results (JSON of benchmarks/mask_head_ablation.py, or Markdown); None: every one
# of runs/ablation/shapes.json, runs/ablation/coco_mini.json, docs/results.md that exists.
RESULTS = None
OUTPUT_DIR = "runs/notebooks/05_partial_supervision"

# %%
# %matplotlib inline
import json
from pathlib import Path

from IPython.display import Image, Markdown, display

from deepmac_nb import _io, tutorial, viz

tutorial.quiet_tensorflow()
from deepmac_nb.evaluation import baselines
from deepmac_nb.inference.predictor import Predictor

found = tutorial.find_results() if RESULTS is None else [tutorial.require_path(RESULTS, "RESULTS")]
out = Path(OUTPUT_DIR)
out.mkdir(parents=True, exist_ok=True)
steps = tutorial.QUICK_STEPS if QUICK else None
max_images = 40 if QUICK else None

# %% [markdown]
# ## 1. What partial supervision does to the loss
#
# Every training instance keeps its box: the detector (CenterNet's centre heatmap, size
# and offset heads) learns all classes. Only instances of the *seen* classes carry a mask
# loss; for the others the mask weight is 0, so no gradient from their masks reaches the
# mask head. Here is one real batch of the quick experiment, as the input pipeline
# labels it:

# %%
viz.table(tutorial.training_batch_rows(tutorial.quick_params(steps)))

# %% [markdown]
# So the mask head sees discs, squares, triangles and crosses, and at test time must
# segment stars, rings, crescents and hearts from their boxes. It cannot memorise a
# class: it has to learn what makes *any* object's mask, from the crop's appearance.
#
# ## 2. The mask heads
#
# Deep-MAC crops a pixel-embedding map (plus an instance embedding and two coordinate
# channels) to each box and hands the `S x S` crop to the mask head. The families:
#
# * `conv2`, `conv4`: a few 3x3 convolutions, the classic Mask R-CNN-style head;
# * `resnet4` ... `resnet20`: stacks of residual blocks;
# * `hourglass10` ... `hourglass100`: encoder-decoder networks that downsample the crop
#   several times and come back up, so every output pixel sees the whole object;
# * `fully_connected`: flatten and two dense layers.
#
# The paper's finding: shallow heads segment the seen classes well but generalise poorly,
# while deep heads, hourglasses above all, close much of the gap on unseen classes, and
# this holds for Mask R-CNN (Deep-MARC) as well as CenterNet (Deep-MAC). Depth is not the
# same as size: `fully_connected` has the most parameters of all and no depth to speak
# of. Parameter counts at the paper's width (nc = 64, S = 32, 50 input channels):

# %%
head_rows = tutorial.mask_head_parameter_counts()
_io.write_json(out / "head_params.json", head_rows)
viz.table(head_rows)

# %% [markdown]
# ## 3. Ablation results
#
# The full ablation (`benchmarks/mask_head_ablation.py`: every head trained the same way,
# two seeds, evaluated with ground-truth boxes and with its own detections) takes about an
# hour on a CPU, so it is a separate run. When its results exist they are shown here:
# the unseen-class AP is the column to read.

# %%
for path in found:
    print(f"--- {path}")
    if path.suffix == ".md":
        display(Markdown(path.read_text()))
        continue
    results = json.loads(path.read_text())
    rows = tutorial.ablation_table(results)
    print("seen / unseen =", " / ".join(results.get("splits", ["?", "?"])))
    display(viz.table(rows))
    if rows and "unseen AP" in rows[0]:
        viz.show(viz.plot_ap_vs_params(rows, "unseen AP"))
for figure in sorted(tutorial.repo_path("docs").glob("ablation_*.png")):
    display(Image(filename=str(figure)))
if not found:
    print(
        f"Ablation results: not yet run. Command (from the repository root):\n\n{tutorial.ABLATION_COMMAND}"
    )

# %% [markdown]
# ## 4. A shallow head next to the deep one, here
#
# A miniature of the ablation that runs in minutes: the quick configuration trained once
# with `hourglass20` (the shared model) and once with each head in `COMPARE_HEADS`,
# evaluated box-prompted on the shapes validation images, with the ellipse as the
# no-learning reference. Read it as a demonstration of the *method*, not as evidence:
# after a few hundred steps no head is near convergence, and which one comes out ahead
# changes from run to run (CPU training is not bit-reproducible). The conclusion comes
# from the ablation above: longer training, several seeds, spread reported. With
# `QUICK = False` these runs use the experiment's full schedule.

# %%
annotations, images = tutorial.quick_eval_set()
heads = {"hourglass20": tutorial.ensure_quick_model(steps)}
heads.update({head: tutorial.ensure_quick_model(steps, head) for head in COMPARE_HEADS})
predictors = {head: Predictor.from_model_dir(model_dir) for head, model_dir in heads.items()}
params = {
    r["head"]: r["params"] for r in tutorial.mask_head_parameter_counts(list(heads), 16, 32, 34)
}
comparison = []
for head, predictor in predictors.items():
    metrics = tutorial.box_prompted_metrics(predictor.predict, annotations, images, max_images)
    row = {"head": head, "params (quick width)": params[head]}
    comparison.append(row | {f"{s} AP": metrics["mask"][s]["AP"] for s in ("seen", "unseen")})
ellipse = tutorial.box_prompted_metrics(baselines.ellipse_masks, annotations, images, max_images)
comparison.append({"head": "ellipse (no learning)", "params (quick width)": 0}
                  | {f"{s} AP": ellipse["mask"][s]["AP"] for s in ("seen", "unseen")})  # fmt: skip
_io.write_json(out / "head_comparison.json", comparison)
viz.table(comparison)

# %% [markdown]
# And the masks themselves, on unseen classes only: each row is one object the mask
# head never saw a mask of; each column a head.

# %%
sheet = tutorial.mask_grid(
    tutorial.unseen_examples(5), predictors, title="unseen-class masks by head"
)
viz.save_figure(sheet, out / "unseen_by_head.png")
sheet

# %% [markdown]
# ## Take-aways
#
# * Partial supervision changes only the mask loss: unseen classes keep their boxes.
# * Whether masks transfer to unseen classes is mostly a property of the mask head;
#   deeper encoder-decoder heads transfer better, and the choice costs nothing at
#   annotation time.
# * Measure it the paper's way: box-prompted mask AP on the unseen split, next to
#   a no-learning baseline that shows how hard the unseen shapes are by themselves.
