"""The shipped reference models (``deepmac_nb.reference_models``): they load and score
the box-prompted mask AP recorded in their ``reference.json`` on the shapes val set."""

from __future__ import annotations

import pytest

from deepmac_nb import reference_models

HEADS = reference_models.available()


def test_a_shallow_and_a_deep_head_are_shipped_small():
    assert HEADS[0].startswith("conv") and any(h.startswith("hourglass") for h in HEADS)
    total = sum(p.stat().st_size for h in HEADS for p in reference_models.model_dir(h).iterdir())
    assert total < 5_000_000, f"reference models take {total} bytes"
    for head in HEADS:
        info = reference_models.info(head)
        assert (
            info["head"] == head and info["steps"] > 0 and "mask_head_ablation" in info["command"]
        )
    with pytest.raises(FileNotFoundError, match="shipped"):
        reference_models.model_dir("nohead")


@pytest.mark.large
def test_shipped_models_reproduce_their_recorded_ap(tmp_path, monkeypatch):
    # An empty cache: the val set is regenerated from the generator, as on a fresh checkout.
    monkeypatch.setenv("DEEPMAC_NB_CACHE", str(tmp_path))
    for head in HEADS:
        recorded = reference_models.info(head)["box_prompted_mask_AP"]
        measured = reference_models.evaluate(reference_models.model_dir(head))
        for split in ("seen", "unseen"):
            assert abs(measured[split] - recorded[split]) <= 0.5, (head, split, measured)
