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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/deepmac-nb/deepmac_nb/blob/main/notebooks/01_data_prep.ipynb)
# [![Open in Kaggle](https://kaggle.com/static/images/open-in-kaggle.svg)](https://kaggle.com/kernels/welcome?src=https://github.com/deepmac-nb/deepmac_nb/blob/main/notebooks/01_data_prep.ipynb)
#
# # 01 · Data: TFRecords and class splits
#
# Partially supervised instance segmentation needs two things from the data:
#
# * **boxes for every object** (the detector learns all classes), and
# * **masks for some classes only**: the *seen* split. The other classes, *unseen*,
#   keep their boxes but their masks are never shown to the model. At test time we
#   measure mask quality on the unseen classes: that is the number the paper is about.
#
# This notebook builds both datasets the project uses, as TFRecords in Model Garden's
# `tf.Example` layout (`deepmac-nb prepare`), and shows the splits:
#
# 1. the **synthetic shapes** set: 8 procedural classes, generated on the spot;
# 2. **COCO** (here the COCO-mini sample photos): the paper's VOC / non-VOC split.

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
QUICK = True  # True: the COCO-mini val_dev file only; False: every COCO-mini file
# COCO-format input: None = the COCO-mini sample photos (skipped if absent). Your own data:
# the annotation JSON and the folder its file_name entries are in.
COCO_ANNOTATIONS = None
COCO_IMAGES = None
OUTPUT_DIR = "runs/notebooks/01_data_prep"

# %%
# %matplotlib inline
import json
from pathlib import Path

from deepmac_nb import _io, splits, tutorial, viz
from deepmac_nb.data import coco_tfrecord, samples, shapes

coco_sets = tutorial.coco_inputs(
    COCO_ANNOTATIONS, COCO_IMAGES, names=("val_dev",) if QUICK else samples.COCO_MINI_SPLITS
)
out = Path(OUTPUT_DIR)
out.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. The synthetic shapes set
#
# Eight shape classes, several per image and overlapping, in camouflage: the objects and
# the background are painted from the *same* two colours with different textures
# (stripes, spots, dapples, mottle), under soft light, with faint contours on some
# objects, unannotated blobs in object textures and thin stalks in the background
# texture lying over everything. Colour alone cannot tell an object from its
# surroundings; the change of texture along its outline can. Each image is a pure
# function of `(seed, index, config)`, so the set is identical on every machine and needs
# no download; `ShapesConfig.preset("classic")` gives the older flat-colour look. The
# masks are the *visible* part of each object.
#
# This is the set the quick experiment trains on (1000 train + 200 val images, 128 px):
# `ensure_shapes_dataset` generates it into the cache once (COCO JSON + PNGs +
# TFRecords), and notebooks 02-05 reuse it.

# %%
val_json, images_dir = tutorial.quick_eval_set()  # generates train and val on first use
paths = shapes.ShapesPaths(
    val_json.parent, val_json.parent / "train.json", val_json, images_dir,
    val_json.parent / "tfrecords",
)  # fmt: skip
print("shapes set:", paths.root)
shapes_summary = json.loads((paths.tfrecords_dir / "train-summary.json").read_text())
print(coco_tfrecord.format_summary(shapes_summary))
print("TFRecords:", sorted(p.name for p in paths.tfrecords_dir.glob("*.tfrecord")))
viz.coco_image_sheet(paths.train_json, paths.images_dir, count=8, title="shapes: train images")

# %% [markdown]
# ## 2. Class splits
#
# `deepmac_nb.splits` names the splits: for the shapes set `seen` = disc, square, triangle,
# cross (ids 1-4) and `unseen` = star, ring, crescent, heart (ids 5-8). The unseen shapes
# are deliberately harder: holes, concavities and spikes, so a mask head cannot get them
# right by drawing a blob inside the box.
#
# In training (`allowed_mask_classes: seen`), every instance contributes to the detection
# losses, but the mask loss of an unseen instance is multiplied by zero. The model never
# learns from an unseen mask.

# %%
shape_rows = [
    {
        "id": c["id"],
        "name": c["name"],
        "split": splits.split_of(c["id"], splits.SHAPES_SEEN_IDS),
        "instances": c["instances"],
    }
    for c in shapes_summary["categories"]
]
split_counts = {"shapes": {}}
for row in shape_rows:
    split_counts["shapes"][row["split"]] = (
        split_counts["shapes"].get(row["split"], 0) + row["instances"]
    )
print("instances per split:", split_counts["shapes"])
viz.table(shape_rows)

# %%
viz.plot_class_counts(shape_rows, title="shapes train: instances per class and split")

# %% [markdown]
# Masks of seen classes (the model trains on these) and of unseen classes (it never sees
# these masks, only the boxes):

# %%
viz.show(
    viz.instance_gallery(
        paths.train_json,
        paths.images_dir,
        splits.SHAPES_SEEN_IDS,
        8,
        "seen: masks used in training",
    )
)
viz.show(
    viz.instance_gallery(
        paths.train_json, paths.images_dir, splits.SHAPES_UNSEEN_IDS, 8, "unseen: boxes only"
    )
)

# %% [markdown]
# ## 3. COCO: the VOC / non-VOC split
#
# The paper trains on COCO with masks for the 20 PASCAL VOC classes (`voc`: person, car,
# dog, ...) and reports mask AP on the other 60 (`non_voc`: giraffe, toilet, kite, ...),
# and the other way round. `convert_coco` writes Model Garden's TFRecords from any
# COCO-format JSON (polygons or RLE), skipping and counting bad records instead of
# crashing. For full COCO 2017 use the command line:
#
# ```bash
# deepmac-nb prepare coco --annotations instances_train2017.json --images train2017/ --out coco/
# ```

# %%
coco_rows = {}
if not coco_sets:
    print(
        f"COCO-mini sample data not found: section skipped. Set {samples.ENV_VAR} or "
        "COCO_ANNOTATIONS / COCO_IMAGES in the parameters cell."
    )
for name, annotations, images in coco_sets:
    summary_path = out / "coco" / f"{name}-summary.json"
    if summary_path.is_file():  # converted by an earlier run: reuse it
        summary = json.loads(summary_path.read_text())
    else:
        summary = coco_tfrecord.convert_coco(
            annotations, images, out / "coco", prefix=name, progress=False
        )
    print(name, "->", coco_tfrecord.format_summary(summary))
    coco_rows[name] = [
        {"id": c["id"], "name": c["name"], "instances": c["instances"],
         "split": "voc" if c["id"] in splits.VOC_IDS else "non_voc"}
        for c in summary["categories"] if c["instances"]
    ]  # fmt: skip
    split_counts[name] = {
        s: sum(r["instances"] for r in coco_rows[name] if r["split"] == s)
        for s in ("voc", "non_voc")
    }
    print("instances per split:", split_counts[name])

# %%
for name, annotations, images in coco_sets[:1]:
    viz.show(viz.plot_class_counts(coco_rows[name], title=f"{name}: instances per class"))
    viz.show(viz.coco_image_sheet(annotations, images, count=4, title=f"{name}: ground truth"))
    viz.show(
        viz.instance_gallery(annotations, images, splits.VOC_IDS, 8, "voc (masks in training)")
    )
    viz.show(
        viz.instance_gallery(annotations, images, splits.NON_VOC_IDS, 8, "non_voc (boxes only)")
    )

# %% [markdown]
# ## 4. What was written
#
# `splits.json` holds the instance counts per split; the TFRecords are ready for
# `02_train` (the training configs find the shapes set by themselves; for COCO point
# `task.train_data.input_path` at the shards).

# %%
_io.write_json(out / "splits.json", split_counts)
print(json.dumps(split_counts, indent=1))
