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
#      to publish, change deepmac_nb.install.REPOSITORY and pyproject's [project.urls],
#      then run `python -m deepmac_nb.install --sync notebooks/*.py notebooks/*.ipynb`. -->
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/deepmac-nb/deepmac_nb/blob/main/notebooks/00_quickstart.ipynb)
# [![Open in Kaggle](https://kaggle.com/static/images/open-in-kaggle.svg)](https://kaggle.com/kernels/welcome?src=https://github.com/deepmac-nb/deepmac_nb/blob/main/notebooks/00_quickstart.ipynb)
#
# # 00 · Quick start: boxes in, masks out
#
# **DeepMAC** (Birodkar et al., ICCV 2021) turns a box around an object into a pixel mask
# of that object, also for classes it never saw a mask of during training. You give it an
# image and boxes; it gives you one mask per box. Five steps:
#
# 1. install (nothing to do in a checkout),
# 2. load a model: the official COCO checkpoint when online, otherwise a small model
#    trained on synthetic shapes (trained here in about four minutes if none is cached),
# 3. an image and boxes, typed as numbers,
# 4. masks, drawn over the image,
# 5. (optional) draw your own boxes with sliders.

# %%
# Colab / Kaggle: installs the pinned deepmac_nb release, then the TensorFlow 2.20 build this
# runtime needs (tensorflow-tpu + libtpu on a TPU runtime; deepmac_nb.install decides and
# prints which). Does nothing where deepmac_nb is importable (a checkout after `make venv`).
# If TensorFlow was imported before the install, restart the session once.
try:
    import deepmac_nb
except ImportError:
    import subprocess
    import sys

    SPEC = "deepmac_nb @ git+https://github.com/deepmac-nb/deepmac_nb.git@v0.1.0"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", SPEC], check=True)
    from deepmac_nb import install

    install.run(SPEC)

# %% tags=["parameters"]
QUICK = True  # True: the quick model trains for few steps (minutes on a CPU)
# "auto": official if online, else the shipped photo model for your own IMAGE, else quick;
# or "official", "photo", "quick" or a model path.
MODEL = "auto"
IMAGE = None  # path of your own photo; None = synthetic validation image EXAMPLE_INDEX
EXAMPLE_INDEX = 25
# Boxes as numbers: [ymin, xmin, ymax, xmax], fractions of the image height / width.
# These fit the synthetic example; give your own with IMAGE.
BOXES = [
    [0.06, 0.27, 0.35, 0.55],  # star     (a class without masks in training: "unseen")
    [0.75, 0.01, 0.97, 0.21],  # square   (seen)
    [0.21, 0.04, 0.41, 0.23],  # crescent (unseen)
    [0.34, 0.23, 0.75, 0.62],  # square   (seen)
]
OUTPUT_DIR = "runs/notebooks/00_quickstart"

# %%
# %matplotlib inline
from pathlib import Path

import numpy as np
from IPython.display import Markdown, display

from deepmac_nb import tutorial, viz, widgets
from deepmac_nb.inference import iwildcam

if IMAGE is not None:
    tutorial.require_path(IMAGE, "IMAGE", "Give a photo path, or None for the synthetic example.")
tutorial.quiet_tensorflow()
out = Path(OUTPUT_DIR)
out.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. Load a model
#
# `tutorial.load_predictor` returns a `Predictor`: `predict(image, boxes)` takes a `uint8`
# RGB image of any size and `[N, 4]` normalized boxes and returns `float32 [N, H, W]`
# mask probabilities. `"auto"` uses the official DeepMAC checkpoint (CenterNet
# Hourglass-104 trained on COCO, downloaded once) when `download.tensorflow.org`
# answers, and otherwise the project's quick model: the `deepmac_shapes_quick`
# experiment, trained on synthetic shapes with masks for only four of its eight classes.
# It is cached under `$DEEPMAC_NB_CACHE` and shared by all notebooks. It is made for the
# shapes below; for a photo of your own (`IMAGE`) `"auto"` takes the small photo model
# shipped in the package instead, and the banner says what either is worth on photos.

# %%
predictor, description = tutorial.load_predictor(
    MODEL, steps=tutorial.QUICK_STEPS if QUICK else None, photos=IMAGE is not None
)
display(Markdown(tutorial.model_banner(description, photos=IMAGE is not None)))

# %% [markdown]
# ## 2. An image and boxes
#
# Boxes are `[ymin, xmin, ymax, xmax]` as fractions of the image size, so the same
# numbers work at any resolution. They can come from anywhere: a person, a detector
# (MegaDetector in notebook 04), or ground truth.

# %%
image = tutorial.shapes_example(EXAMPLE_INDEX)[0] if IMAGE is None else iwildcam.load_rgb(IMAGE)
boxes = np.array(BOXES, np.float32)
print("image", image.shape, image.dtype, "| boxes", boxes.shape)
viz.show(viz.draw_boxes(image, boxes))

# %% [markdown]
# ## 3. Masks
#
# One forward pass: the backbone computes a pixel-embedding map of the whole image, each
# box crops it, and the mask head turns every crop into a mask in the box's frame, which
# is pasted back into the image. Values above 0.5 are the object.

# %%
masks = predictor.predict(image, boxes)
print("masks", masks.shape, masks.dtype, "| pixels per mask:", (masks > 0.5).sum(axis=(1, 2)))
picture = viz.overlay_masks(image, masks, boxes)
viz.save_png(out / "masks.png", picture)
viz.show(picture)

# %% [markdown]
# The quick model never saw a mask of a star or a crescent, yet its masks follow their
# outlines (roughly, after a few hundred training steps): the mask head learned *shape
# from appearance*, not a list of classes. How well that transfers depends mostly on the
# mask head's architecture; notebook 05 is about exactly that.
#
# ## 4. Draw your own boxes (optional)
#
# Move the two range sliders to place the white draft box, press **add box**, and the
# masks appear. The numbers under the picture can be pasted into `BOXES`.

# %%
picker = widgets.BoxPicker(image, predictor, boxes=boxes)
picker

# %% [markdown]
# **Next:** `01_data_prep` (data and class splits), `02_train` (training), `03_evaluate`
# (seen vs unseen mask AP), `04_iwildcam_visualize` (camera traps), `05_partial_supervision`
# (why the mask head matters).
