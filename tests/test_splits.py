import pytest

from deepmac_nb import splits


def test_voc_and_non_voc_partition_coco():
    assert len(splits.VOC_IDS) == 20
    assert len(splits.NON_VOC_IDS) == 60
    assert set(splits.VOC_IDS) | set(splits.NON_VOC_IDS) == set(splits.COCO_IDS)
    assert not set(splits.VOC_IDS) & set(splits.NON_VOC_IDS)
    assert splits.resolve_split("voc") == (
        1,
        2,
        3,
        4,
        5,
        6,
        7,
        9,
        16,
        17,
        18,
        19,
        20,
        21,
        44,
        62,
        63,
        64,
        67,
        72,
    )


@pytest.mark.parametrize(
    ("split", "expected"),
    [
        ("1,3, 5", (1, 3, 5)),
        ([5, 3, 3], (3, 5)),
        (7, (7,)),
        ("seen", (1, 2, 3, 4)),
        ("unseen", (5, 6, 7, 8)),
    ],
)
def test_resolve_forms(split, expected):
    assert splits.resolve_split(split) == expected


def test_all_follows_dataset_ids():
    assert splits.resolve_split("all", valid_ids=[3, 1, 2]) == (1, 2, 3)


@pytest.mark.parametrize("bad", ["vocc", "", "1,a", [1.5, "x"], []])
def test_unknown_split_names_fail_clearly(bad):
    with pytest.raises(ValueError):
        splits.resolve_split(bad)


def test_ids_outside_dataset_fail_clearly():
    with pytest.raises(ValueError, match=r"\[99\]"):
        splits.resolve_split([1, 99], valid_ids=splits.COCO_IDS)
