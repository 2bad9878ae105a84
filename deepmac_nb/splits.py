"""Class splits for partial supervision: which categories get mask labels.

DeepMAC's protocol trains with boxes for every class but masks only for a subset
(the "seen" split) and reports mask AP on the complement. The COCO splits are the 20
PASCAL VOC classes (``voc``) and the other 60 (``non_voc``); the synthetic shapes set
has its own ``seen`` / ``unseen`` halves. Category ids are COCO's 1-based ids.

Example:
    >>> resolve_split("voc")[:5]
    (1, 2, 3, 4, 5)
    >>> resolve_split([3, 1])
    (1, 3)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

# The 80 COCO "things" ids (1-based, with gaps where COCO retired categories).
COCO_IDS: tuple[int, ...] = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
    27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50,
    51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75,
    76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
)  # fmt: skip

# PASCAL VOC's 20 classes as COCO ids (person, bicycle, car, motorcycle, airplane,
# bus, train, boat, bird, cat, dog, horse, sheep, cow, bottle, chair, couch,
# potted plant, dining table, tv) - the split used by the paper and Model Garden.
VOC_IDS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 9, 16, 17, 18, 19, 20, 21, 44, 62, 63, 64, 67, 72)

NON_VOC_IDS: tuple[int, ...] = tuple(i for i in COCO_IDS if i not in VOC_IDS)

# Synthetic shapes dataset (deepmac_nb.data.shapes): ids 1..8, first half seen.
SHAPES_IDS: tuple[int, ...] = tuple(range(1, 9))
SHAPES_SEEN_IDS: tuple[int, ...] = (1, 2, 3, 4)
SHAPES_UNSEEN_IDS: tuple[int, ...] = (5, 6, 7, 8)

SPLITS: dict[str, tuple[int, ...]] = {
    "voc": VOC_IDS,
    "non_voc": NON_VOC_IDS,
    "all": COCO_IDS,
    "seen": SHAPES_SEEN_IDS,
    "unseen": SHAPES_UNSEEN_IDS,
    "shapes_all": SHAPES_IDS,
}


def resolve_split(
    split: str | int | Iterable[int], valid_ids: Sequence[int] | None = None
) -> tuple[int, ...]:
    """Maps a split name, an id list, or a comma-separated string to sorted class ids.

    Args:
      split: a name in ``SPLITS`` (``voc``, ``non_voc``, ``all``, ``seen``, ``unseen``,
        ``shapes_all``), an iterable of ints, or a string like ``"1,3,5"``.
      valid_ids: the dataset's category ids. When given, every id must be in it and
        ``all`` means exactly these ids.

    Returns:
      A sorted tuple of unique 1-based category ids.

    Raises:
      ValueError: for an unknown name, a non-integer entry, or ids outside ``valid_ids``.
    """
    if isinstance(split, str):
        name = split.strip()
        if name == "all" and valid_ids is not None:
            return tuple(sorted(set(int(i) for i in valid_ids)))
        if name in SPLITS:
            ids = SPLITS[name]
        elif name.replace(",", "").replace(" ", "").isdigit():
            ids = tuple(int(tok) for tok in name.split(",") if tok.strip())
        else:
            raise ValueError(
                f"Unknown class split {split!r}. Valid names: {', '.join(SPLITS)}; "
                "or give a comma-separated list of category ids such as '1,3,5'."
            )
    elif isinstance(split, int):
        ids = (split,)
    else:
        try:
            ids = tuple(int(i) for i in split)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"Class split must be a name or integer ids, got {split!r}") from exc
    ids = tuple(sorted(set(ids)))
    if not ids:
        raise ValueError("Class split is empty.")
    if valid_ids is not None:
        unknown = sorted(set(ids) - set(int(i) for i in valid_ids))
        if unknown:
            raise ValueError(
                f"Class ids {unknown} are not categories of this dataset "
                f"(valid ids: {sorted(valid_ids)})."
            )
    return ids


def split_of(category_id: int, seen: Sequence[int]) -> str:
    """Returns ``"seen"`` if ``category_id`` had mask labels in training, else ``"unseen"``."""
    return "seen" if category_id in set(seen) else "unseen"
