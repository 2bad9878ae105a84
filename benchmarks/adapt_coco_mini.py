"""What ``deepmac-nb adapt`` is worth on COCO-mini: unseen-class mask AP before and after
adapting a model with boxes only.

The model (trained with VOC masks only, e.g. ``deepmac_coco_mini_voc``) is adapted on the
images of an annotation file using only the *boxes* of one class split (the non-VOC
classes by default), written as a MegaDetector-format file with confidence 1, exactly as
an ecologist's detections would reach ``adapt``. Both models are then scored with GT boxes
on the same file's masks; the adapted split's masks are never used for training, so the
"after" row is what boxes alone taught the mask head (transductive: same images).

    .venv/bin/python benchmarks/adapt_coco_mini.py \\
        --model deepmac_nb/photo_model/deepmac_coco_mini_voc_img \\
        --annotations ../shared/data/coco_mini/annotations/val_dev.json \\
        --images ../shared/data/coco_mini/images --out runs/adapt/photo --steps 300

Writes ``OUT/adapt_coco_mini.json`` (before / after split AP, steps, counts) and prints a
table; the adapted model dir is ``OUT/model``. Results: docs/results.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from deepmac_nb import _io


def boxes_as_detections(coco, category_ids) -> dict:
    """The non-crowd boxes of ``category_ids`` in a COCO index as a MegaDetector 1.x
    batch file (normalized ``[x, y, w, h]``, confidence 1, category "1"); images without
    such a box are left out."""
    wanted = set(int(i) for i in category_ids)
    images = []
    for image_id in sorted(coco.getImgIds()):
        info = coco.imgs[image_id]
        width, height = float(info["width"]), float(info["height"])
        detections = [
            {"category": "1", "conf": 1.0,
             "bbox": [a["bbox"][0] / width, a["bbox"][1] / height,
                      a["bbox"][2] / width, a["bbox"][3] / height]}
            for a in coco.imgToAnns.get(image_id, [])
            if a["category_id"] in wanted and not a.get("iscrowd", 0)
            and a["bbox"][2] > 0 and a["bbox"][3] > 0
        ]  # fmt: skip
        if detections:
            images.append({"file": info["file_name"], "detections": detections})
    return {"info": {"format_version": "1.3"}, "detection_categories": {"1": "object"},
            "images": images}  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="Deep-MAC model dir to adapt")
    parser.add_argument("--annotations", required=True, help="COCO file: boxes and masks")
    parser.add_argument("--images", required=True)
    parser.add_argument("--out", required=True, help="work folder (adapted model in OUT/model)")
    parser.add_argument("--split", default="non_voc", help="whose boxes adapt the model")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--train-backbone", action="store_true")
    parser.add_argument("--no-flip-tta", action="store_true", help="score without mirror TTA")
    args = parser.parse_args(argv)

    from deepmac_nb import photo_model
    from deepmac_nb.evaluation import coco_eval
    from deepmac_nb.splits import resolve_split
    from deepmac_nb.train import adapt

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    coco = coco_eval.load_coco(args.annotations)
    detections = boxes_as_detections(coco, resolve_split(args.split))
    boxes = sum(len(e["detections"]) for e in detections["images"])
    md_path = out / "boxes_as_detections.json"
    _io.write_json(md_path, detections)
    flip = not args.no_flip_tta

    # photo_model.evaluate scores any Deep-MAC model dir on a COCO file, as it records.
    before = photo_model.evaluate(Path(args.model), coco, args.images, flip)
    adapted = out / "model"
    start = time.perf_counter()
    if not adapted.exists():
        options = adapt.AdaptOptions(min_conf=0.5, steps=args.steps,
                                     train_backbone=args.train_backbone)  # fmt: skip
        adapt.adapt(args.model, md_path, args.images, adapted, options)
    seconds = round(time.perf_counter() - start, 1)
    after = photo_model.evaluate(adapted, coco, args.images, flip)

    record = {
        "model": str(args.model), "annotations": str(args.annotations), "split": args.split,
        "images": len(detections["images"]), "boxes": boxes, "steps": args.steps,
        "train_backbone": args.train_backbone, "flip_tta": flip, "adapt_seconds": seconds,
        "mask_AP_before": before, "mask_AP_after": after,
    }  # fmt: skip
    _io.write_json(out / "adapt_coco_mini.json", record)
    print(f"adapted on {record['images']} images, {boxes} {args.split} boxes, "
          f"{args.steps} steps ({seconds} s)")  # fmt: skip
    print(f"{'split':<10}{'before':>8}{'after':>8}")
    for split in before:
        print(f"{split:<10}{before[split]:>8.1f}{after[split]:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
