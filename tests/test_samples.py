"""The sample-data locator: one setting, clear errors, nothing copied."""

import pytest

from deepmac_nb.data import samples


def test_missing_folder_names_the_setting(monkeypatch, tmp_path):
    monkeypatch.setenv(samples.ENV_VAR, str(tmp_path / "nowhere"))
    assert not samples.available()
    with pytest.raises(samples.SampleDataMissing, match=samples.ENV_VAR):
        samples.coco_mini("val_dev")
    with pytest.raises(samples.SampleDataMissing):
        samples.voc_fixture()


def test_unknown_names_fail_clearly():
    with pytest.raises(ValueError, match="val_dev"):
        samples.coco_mini("val")
    with pytest.raises(ValueError, match="mdv5"):
        samples.camera_traps("md4")


@pytest.mark.skipif(not samples.available(), reason="sample data folder absent")
def test_real_sets_are_found_in_place():
    for split in samples.COCO_MINI_SPLITS:
        found = samples.coco_mini(split)
        assert found.annotations.is_file() and found.images.is_dir()
        assert samples.data_root() in found.annotations.parents
    assert samples.voc_fixture().annotations.name == "voc2011_3img.json"
    assert samples.camera_traps("serengeti_gt").detections.is_file()
