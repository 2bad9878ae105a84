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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/deepmac-nb/deepmac_nb/blob/main/notebooks/04_iwildcam_visualize.ipynb)
# [![Open in Kaggle](https://kaggle.com/static/images/open-in-kaggle.svg)](https://kaggle.com/kernels/welcome?src=https://github.com/deepmac-nb/deepmac_nb/blob/main/notebooks/04_iwildcam_visualize.ipynb)
#
# # 04 · Camera traps: MegaDetector boxes → DeepMAC masks (iWildCam format)
#
# Camera-trap projects run **MegaDetector**, which finds `animal`, `person` and `vehicle`
# boxes but no masks. DeepMAC is the natural next step: every detection is a box prompt,
# and a class-agnostic mask head turns it into a mask, for species it never saw. The
# iWildCam 2021 competition shipped exactly this: DeepMAC masks of MegaDetector boxes, one
# PNG per image (`instance_masks/<id>.png`, pixel value *k* = the *k*-th detection of the
# image in the MegaDetector file, 0 = background, higher confidence wins where masks
# overlap). This notebook
#
# 1. reads a MegaDetector results file (any of its JSON variants),
# 2. writes the iWildCam PNGs (`deepmac-nb segment` does the same from the shell),
# 3. adapts the model's masks to these photos with their boxes alone (`deepmac-nb adapt`)
#    and shows them before and after,
# 4. opens an interactive viewer: image, confidence threshold, opacity, category, model.
#
# On Kaggle with an iWildCam competition attached (`/kaggle/input/iwildcam2022-fgvc9/`
# or similar) it uses that data; otherwise the camera-trap sample photos with real
# MegaDetector v5 detections: read in place when the project's sample data folder is
# there, else the detections shipped with the package and the 14 photos downloaded once
# from their public addresses (size and sha256 checked).

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
QUICK = True  # True: the first MAX_IMAGES images only
# MegaDetector JSON and its images folder; None for both = Kaggle iWildCam data if
# attached, else the camera-trap sample set.
DETECTIONS = None
IMAGES_DIR = None
# "auto": official if online, else the photo model shipped with the package;
# or "official", "photo", "coco" (one you trained), "quick", or a path.
MODEL = "auto"
MIN_CONF = 0.2  # MegaDetector confidence threshold for the written masks
ADAPT_STEPS = 100  # boxes-only fine-tuning steps in section 4 (0: skip the section)
ADAPT_MIN_CONF = 0.8  # only confident boxes teach the masks
MAX_IMAGES = 12
OUTPUT_DIR = "runs/notebooks/04_iwildcam_visualize"

# %%
# %matplotlib inline
import collections
import csv
from pathlib import Path

import numpy as np
from IPython.display import Markdown, display
from PIL import Image

from deepmac_nb import loading, tutorial, viz, widgets

detections_path, images_dir, source = tutorial.iwildcam_inputs(DETECTIONS, IMAGES_DIR)
tutorial.quiet_tensorflow()
from deepmac_nb.evaluation import baselines
from deepmac_nb.inference import iwildcam, megadetector, segment_cli

out = Path(OUTPUT_DIR)
out.mkdir(parents=True, exist_ok=True)
max_images = MAX_IMAGES if QUICK else None
print(f"{source}:\n  detections {detections_path}\n  images     {images_dir}")

# %% [markdown]
# ## 1. The MegaDetector file
#
# `read_detections` understands MegaDetector's batch format (normalized `[x, y, w, h]`),
# the iWildCam 2020/2021 variants and list-style outputs, and turns every detection into
# a normalized `[ymin, xmin, ymax, xmax]` box. Broken entries are counted, not fatal.

# %%
detections = megadetector.read_detections(detections_path, images_dir)
entries = detections.images[:max_images]
per_category = collections.Counter(
    d.category for e in entries for d in e.detections if d.conf >= MIN_CONF
)
print(f"format {detections.format}: {len(detections.images)} images; first {len(entries)} used")
print(f"detections with conf >= {MIN_CONF}:", dict(per_category))
viz.table(
    [
        {
            "file": e.file,
            "detections": len(e.detections),
            "max conf": max((d.conf for d in e.detections), default=None),
            "problem": e.failure,
        }
        for e in entries
    ]
)

# %% [markdown]
# ## 2. A model
#
# The official DeepMAC checkpoint (COCO, 1024 px) is the right tool for photos. Offline,
# `"auto"` takes the photo model shipped inside the package (`deepmac_nb.photo_model`,
# about 6 MB): a small CenterNet trained from scratch on 2 CPU cores on 214 COCO photos
# with masks for the 20 VOC classes only, whose mask head also reads each box's pixels.
# On COCO photos it beats an inscribed ellipse on classes it never saw a mask of, and it
# stays far below the official model; the banner says what it is worth. The classical
# baselines are in the viewer too.

# %%
predictor, description = tutorial.load_predictor(
    MODEL, steps=tutorial.QUICK_STEPS if QUICK else None, photos=True
)
# A banner, not a log line: offline (Kaggle with internet off) the stand-in model runs.
display(Markdown(tutorial.model_banner(description, photos=True)))

# %% [markdown]
# ## 3. iWildCam PNGs
#
# `segment` writes, per image, `instance_masks/<id>.png` (uint8; the value of a detection
# is its position in the MegaDetector file, so filtered detections leave gaps),
# `per_image/<id>.json` (COCO RLE, `detection_index` and mask area per instance) and a
# labelled overlay JPEG; then `masks_coco_rle.json` and `mask_areas.csv` (pixels and
# fraction of the box, per instance: a body-size measure) for all images. Rerunning skips
# images already written, so a long run resumes.

# %%
summary = segment_cli.segment(
    predictor,
    detections,
    images_dir,
    out / "iwildcam",
    min_conf=MIN_CONF,
    overlays=True,
    max_images=max_images,
    progress=False,
)
print(segment_cli.format_summary(summary))
pngs = sorted((out / "iwildcam" / "instance_masks").rglob("*.png"))
print(len(pngs), "PNGs, e.g.", [p.name for p in pngs[:3]])
viz.table(list(csv.DictReader(open(out / "iwildcam" / segment_cli.AREAS_FILE)))[:10])

# %% [markdown]
# What a PNG holds: one integer per pixel. Value *k* is the *k*-th detection of that
# image in the MegaDetector file (those below the threshold are not drawn, their values
# unused); 0 is background.

# %%
written = [e for e in entries if iwildcam.png_path(out / "iwildcam", e.key).is_file()]
with_masks = [e for e in written if any(d.conf >= MIN_CONF for d in e.detections)]
tiles, titles = [], []
for entry in with_masks[:8]:
    labels = np.asarray(Image.open(iwildcam.png_path(out / "iwildcam", entry.key)))
    overlay = out / "iwildcam" / "overlays" / f"{entry.key}.jpg"
    tiles.append(iwildcam.load_rgb(overlay))
    titles.append(f"{entry.key}: labels {sorted(set(np.unique(labels).tolist()) - {0})}")
viz.contact_sheet(tiles, titles, ncols=4, title="instance masks written (overlays)")

# %% [markdown]
# ## 4. Adapt the masks to your cameras, with boxes only
#
# A camera-trap project has MegaDetector boxes for thousands of its own photos and no
# masks. `deepmac-nb adapt` turns the confident boxes into training records and fine-tunes
# the mask head from a model dir with the weak losses alone: *box consistency* (the
# mask's rows and columns must fill its box, as the box's do) and *colour consistency*
# (neighbouring pixels of similar colour get the same label). No mask is needed.
#
# The official checkpoint is an exported SavedModel, which cannot be trained further, so
# this adapts the project's own model (the shipped photo model with `MODEL="auto"`). What
# adapting is worth is measured on COCO-mini photos with their masks (docs/results.md);
# on these photos there are no masks to score, so look at the pictures and do not take
# them as proof. The same from the shell:
#
# ```bash
# deepmac-nb adapt --model MODEL_DIR --detections md.json --images DIR --out NEW_DIR --steps 300
# ```

# %%
models = {description: predictor}
if ADAPT_STEPS:
    source_dir, source_name = tutorial.adaptable_model_dir(
        MODEL, steps=tutorial.QUICK_STEPS if QUICK else None
    )
    adapted_dir = tutorial.adapted_model_dir(
        source_dir, detections_path, images_dir, out / "adapted", ADAPT_STEPS, ADAPT_MIN_CONF
    )
    pair = {
        "before": loading.from_model_dir(source_dir),
        f"after {ADAPT_STEPS} steps": loading.from_model_dir(adapted_dir),
    }
    compare = widgets.CameraTrapViewer(
        written or entries, images_dir, pair, min_conf=ADAPT_MIN_CONF
    )
    tiles, titles = compare.compare(list(pair), count=4)
    sheet_title = f"{source_name}, adapted on boxes >= {ADAPT_MIN_CONF} (zoomed on the boxes)"
    sheet = viz.contact_sheet(tiles, titles, ncols=2, tile=3.6, title=sheet_title)
    viz.save_figure(sheet, out / "adapt_before_after.png")
    viz.show(sheet)
    models[f"{source_name}, adapted {ADAPT_STEPS} steps"] = pair[f"after {ADAPT_STEPS} steps"]

# %% [markdown]
# ## 5. Interactive viewer
#
# Slide through the images, raise the confidence threshold to drop weak detections,
# change the mask opacity, filter MegaDetector categories and switch between the models
# (the adapted one included) and the baselines. (The controls need a live kernel; an HTML
# export shows the picture.)

# %%
models.update(
    {"ellipse (baseline)": baselines.ellipse_masks, "box (baseline)": baselines.box_masks}
)
viewer = widgets.CameraTrapViewer(written or entries, images_dir, models, min_conf=MIN_CONF)
viz.show(viewer.render())
viewer

# %% [markdown]
# **For a competition submission** zip `instance_masks/`; for analysis
# `masks_coco_rle.json` loads with pycocotools. The same run from the shell:
#
# ```bash
# deepmac-nb segment --model MODEL --detections md.json --images DIR --out OUT --overlays
# ```
