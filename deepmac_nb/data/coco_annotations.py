"""The COCO annotation file as the converter reads it: checked on load, grouped into one
work order per image (``ImageTask``), and the per-reason ``Issues`` tally that the
summary reports."""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path

from deepmac_nb.data.coco_encode import ImageTask

MAX_EXAMPLES = 5  # names kept per reason in the summary; counts are always complete


class Issues:
    """Counts per reason plus the first few names, for the summary and its one-liner."""

    def __init__(self) -> None:
        self.counts: collections.Counter = collections.Counter()
        self.examples: dict[str, list[str]] = collections.defaultdict(list)

    def add(self, reason: str, name: str) -> None:
        self.counts[reason] += 1
        if len(self.examples[reason]) < MAX_EXAMPLES:
            self.examples[reason].append(name)

    def as_dict(self) -> dict:
        return {r: {"count": n, "examples": self.examples[r]} for r, n in self.counts.items()}


def describe_issues(issues: dict) -> str:
    """``Issues.as_dict()`` as text: ``reason count (name, name, ...)``, most frequent first."""
    texts = []
    for reason, item in sorted(issues.items(), key=lambda kv: -kv[1]["count"]):
        more = ", ..." if item["count"] > len(item["examples"]) else ""
        texts.append(f"{reason} {item['count']} ({', '.join(item['examples'])}{more})")
    return "; ".join(texts)


def load_coco(path: str | os.PathLike) -> dict:
    """Reads and sanity-checks a COCO JSON; errors are one-line, user-facing messages."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        with path.open("rb") as f:
            coco = json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: not UTF-8 text ({exc.reason})") from None
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
        raise ValueError(f"{path} is not a COCO annotation file: no 'images' list")
    if not isinstance(coco.get("categories"), list):
        raise ValueError(f"{path} is not a COCO annotation file: no 'categories' list")
    return coco


def category_names(coco: dict) -> dict[int, str]:
    """``{category id: name}`` of the file's ``categories``; a bad id is a ValueError."""
    try:
        return {int(c["id"]): str(c.get("name", c["id"])) for c in coco["categories"]}
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ValueError("every COCO 'categories' entry needs an integer 'id'") from None


def build_tasks(coco: dict, images_dir: Path, issues: Issues) -> list[ImageTask]:
    """Groups annotations by image; duplicate ids and orphan annotations are reported."""
    by_image = collections.defaultdict(list)
    for ann in coco.get("annotations") or []:
        by_image[ann.get("image_id")].append(ann)
    category_ids = frozenset(category_names(coco))
    tasks, seen = [], set()
    for image in coco["images"]:
        if image.get("id") in seen:
            issues.add("duplicate image id", str(image.get("file_name")))
            continue
        seen.add(image.get("id"))
        path = str(images_dir / str(image.get("file_name", "")))
        tasks.append(ImageTask(path, image, by_image.pop(image.get("id"), []), category_ids))
    for anns in by_image.values():
        for ann in anns:
            issues.add("annotation for unknown image", f"image_id={ann.get('image_id')}")
    return tasks
