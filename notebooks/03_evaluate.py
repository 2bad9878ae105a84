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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/deepmac-nb/deepmac_nb/blob/main/notebooks/03_evaluate.ipynb)
# [![Open in Kaggle](https://kaggle.com/static/images/open-in-kaggle.svg)](https://kaggle.com/kernels/welcome?src=https://github.com/deepmac-nb/deepmac_nb/blob/main/notebooks/03_evaluate.ipynb)
#
# # 03 · Evaluation: seen vs unseen mask AP
#
# The question DeepMAC asks: *how good are the masks of classes that had no mask labels?*
# So every number here is split by class: **seen** classes (masks in training) and
# **unseen** classes (boxes only). We use COCO's mask AP (pycocotools) and two protocols:
#
# * **box-prompted** (the paper's headline): every ground-truth box is given, with its
#   class and score 1. Only the mask is judged, so detection errors do not blur the
#   comparison between mask heads;
# * **detected**: the model finds the objects itself; mask AP then also pays for missed
#   and false detections.
#
# Classical methods that need no training are the reference points: a filled box, the
# inscribed ellipse and GrabCut.

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
QUICK = True  # True: the first 40 validation images; False: all of them
MODEL = "quick"  # "quick", "official", "auto" or a model path (model dir, SavedModel, ...)
# COCO-format evaluation set; None for both = the shapes validation set (200 images).
# E.g. the COCO-mini sample: ../shared/data/coco_mini/annotations/val_dev.json + images/
ANNOTATIONS = None
IMAGES = None
BASELINES = ("box", "ellipse", "grabcut")
OUTPUT_DIR = "runs/notebooks/03_evaluate"

# %%
# %matplotlib inline
from pathlib import Path

from deepmac_nb import _io, tutorial, viz

tutorial.quiet_tensorflow()
annotations, images = tutorial.eval_inputs(ANNOTATIONS, IMAGES)
from IPython.display import display

from deepmac_nb.data.shape_drawing import SHAPE_CLASSES
from deepmac_nb.evaluation import baselines, evaluate, evaluate_cli, mask_sheet, plots

out = Path(OUTPUT_DIR)
out.mkdir(parents=True, exist_ok=True)
max_images = 40 if QUICK else None
print("evaluating on", annotations, "|", images)

# %% [markdown]
# ## 1. The model, box-prompted
#
# `evaluate` runs one protocol and scores it. Box-prompted, it calls
# `predictor.predict(image, gt_boxes)` for every image and collects COCO results
# (`run_box_prompted`); then `evaluate_predictions` runs pycocotools once on those
# images and reads AP per split out of it. The run's statistics come back as `stats`.
# For the shapes set the splits are `seen` / `unseen`, for COCO ids `voc` / `non_voc`.

# %%
predictor, description = tutorial.load_predictor(
    MODEL, steps=tutorial.QUICK_STEPS if QUICK else None
)
warm_image, warm_boxes, *_ = tutorial.shapes_example(0)
predictor.predict(warm_image, warm_boxes)  # traces the graph once, outside the timing
box_prompted = evaluate(predictor, annotations, images, max_images=max_images, pr_curves=True)
stats = box_prompted.pop("stats")
box_prompted.update(
    protocol="box_prompted", model=description, stats=stats, seconds=stats["seconds_total"]
)
speed = {
    "images": stats["images"],
    "seconds_model": stats["seconds_model"],
    "images_per_s": round(stats["images"] / max(stats["seconds_model"], 1e-9), 2),
}
print(evaluate_cli.format_table(box_prompted))
print(f"\nmodel speed: {speed['images_per_s']} images/s (box-prompted, this machine)")

# %%
viz.show(plots.plot_per_class_ap(box_prompted))
viz.show(plots.plot_ap_by_size(box_prompted))
viz.show(plots.plot_pr_curves(box_prompted))

# %% [markdown]
# The gap between the seen and unseen bars is the price of partial supervision. A good
# mask head keeps it small; notebook 05 compares heads.
#
# ## 2. The model, detected
#
# Now the model gets only the image. Its CenterNet head proposes boxes, classes and
# scores, and the mask head segments its own boxes. The box AP shows how much of the
# mask AP drop is detection. Expect low numbers here: the detector of a few minutes of
# CPU training is young (its box AP is far below what the mask head does with given
# boxes), so on this hardware detected mask AP mostly measures the detector. That is why
# mask heads are compared box-prompted, as in the paper.

# %%
detected = None
if hasattr(predictor, "detect"):
    detected = evaluate(predictor, annotations, images, "detected", max_images=max_images)
    stats = detected.pop("stats")
    detected.update(
        protocol="detected", model=description, stats=stats, seconds=stats["seconds_total"]
    )
    print(evaluate_cli.format_table(detected))
else:
    print(
        "This Predictor has no detect(): the detected protocol is not available for this "
        "model here. The command line equivalent is `deepmac-nb evaluate --boxes detected`."
    )

# %%
splits = [s for s in box_prompted["mask"] if s != "all"]
protocol_rows = [
    {"protocol": m["protocol"], **{f"{s} mask AP": m["mask"][s]["AP"] for s in splits}}
    for m in (box_prompted, detected)
    if m is not None
]
viz.table(protocol_rows)

# %% [markdown]
# ## 3. Baselines side by side
#
# Same protocol (box-prompted), no learning: `box` fills the box, `ellipse` fills the
# inscribed ellipse, `grabcut` runs OpenCV's GrabCut initialised with the box. They know
# nothing about classes, so their own seen / unseen gap measures how much harder the
# unseen shapes are by themselves; compare the model's gap with theirs. On the shapes
# set the objects are painted from the same two colours as the background (only the
# texture differs), so GrabCut's colour mixtures inside and outside the box are alike and
# it returns roughly the box; the ellipse is right for discs and wrong for every hole,
# bite and spike. The model has to see the change of texture along the outline.

# %%
results = {"model": box_prompted}
for name in BASELINES:
    results[name] = evaluate(
        baselines.get_mask_fn(name), annotations, images, max_images=max_images
    )
    stats = results[name].pop("stats")
    results[name].update(protocol="box_prompted", method=name, stats=stats)
comparison = [
    {"method": name, **{f"{s} AP": m["mask"][s]["AP"] for s in ["all", *splits]}}
    for name, m in results.items()
]
viz.table(comparison)

# %%
viz.plot_method_comparison(results, path=out / "method_comparison.png")

# %% [markdown]
# What the numbers look like: one unseen-class instance per class (ring, crescent, star,
# heart), the model's mask next to the baselines', each tinted in a colour that stands
# out from the object, with its IoU; the white-and-black line is the ground-truth
# outline. (With your own `ANNOTATIONS` this sheet still shows the shapes set.)

# %%
names = {i + 1: name for i, name in enumerate(SHAPE_CLASSES)}
examples = mask_sheet.examples_by_class([6, 7, 5, 8])
methods = {"model": predictor, **{n: baselines.get_mask_fn(n) for n in BASELINES}}
sheet, iou_rows = mask_sheet.mask_sheet(
    examples, methods, names, title="unseen classes: model vs baselines"
)
viz.save_figure(sheet, out / "unseen_examples.png")
display(sheet)
viz.table(iou_rows)

# %% [markdown]
# Four objects are few. Each is the largest of its class in the first 40 validation
# images, chosen by size, not by how any method does on it: it can be a hard case. The
# mean IoU over every unseen object of the evaluated shapes images (the shapes set, like
# the sheet, also with your own `ANNOTATIONS`) is the fairer picture:

# %%
viz.table(mask_sheet.class_mean_iou(methods, [6, 7, 5, 8], names, num_images=max_images or 200))

# %% [markdown]
# ## 4. Saved metrics
#
# `metrics.json` holds every table above (per-class AP included), in the format of
# `deepmac-nb evaluate`'s output for each run.

# %%
metrics = {
    "model": description,
    "annotations": str(annotations),
    "protocols": {"box_prompted": box_prompted, "detected": detected},
    "baselines": {name: m for name, m in results.items() if name != "model"},
    "speed": speed,
}
_io.write_json(out / "metrics.json", metrics)
print("wrote", out / "metrics.json")
