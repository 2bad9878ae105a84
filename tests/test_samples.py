"""The sample-data locator: one setting, clear errors, nothing copied."""

import json

import pytest

from deepmac_nb import download
from deepmac_nb.data import samples
from deepmac_nb.errors import UserError
from deepmac_nb.inference import megadetector


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


def _shared_camera_trap_images():
    images = samples.data_root() / "camera_traps" / "images"
    if not images.is_dir():
        pytest.skip("camera-trap sample photos absent (needed as the local mirror)")
    return images


def test_camera_traps_download_where_the_data_folder_is_absent(monkeypatch, tmp_path):
    mirror = _shared_camera_trap_images()
    monkeypatch.setenv(samples.ENV_VAR, str(tmp_path / "nowhere"))
    monkeypatch.setenv(download.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(samples.MIRROR_ENV, str(mirror))  # file:// addresses, no network
    with pytest.raises(samples.SampleDataMissing):
        samples.camera_traps("mdv5")
    found = samples.camera_traps("mdv5", download=True)
    assert found.images == tmp_path / "cache" / "camera_traps" / "images"
    assert found.detections.parent == samples.PACKAGE_DATA
    entries = megadetector.read_detections(found.detections, found.images).images
    assert len(entries) == 10 and all((found.images / e.file).is_file() for e in entries)
    assert len(list(found.images.glob("*.jp*g"))) == 14
    for item in samples.camera_trap_sources():
        path = found.images / item["file"]
        assert path.stat().st_size == item["bytes"] and download.sha256_of(path) == item["sha256"]


def test_a_changed_photo_is_refused_and_not_kept(monkeypatch, tmp_path):
    item = samples.camera_trap_sources()[0]
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / item["file"]).write_bytes(b"not the photo")
    monkeypatch.setenv(download.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(samples.MIRROR_ENV, str(tmp_path / "mirror"))
    with pytest.raises(UserError, match=r"expected .* bytes"):
        samples.downloaded_camera_traps(files=[item["file"]])
    assert not (tmp_path / "cache" / "camera_traps" / "images" / item["file"]).exists()


def test_package_data_matches_the_sample_data_it_describes():
    root = samples.data_root() / "camera_traps"
    if not root.is_dir():
        pytest.skip("sample data folder absent")
    shared = json.loads((root / "SOURCES.json").read_text())["images"]
    ours = samples.camera_trap_sources()
    assert [(i["file"], i["url"], i["bytes"], i["sha256"]) for i in ours] == [
        (i["file"], i["url"], i["bytes"], i["sha256"]) for i in shared
    ]
    packaged = json.loads(
        (samples.PACKAGE_DATA / samples.CAMERA_TRAP_DETECTIONS["mdv5"]).read_text()
    )
    original = json.loads((root / samples.CAMERA_TRAP_DETECTIONS["mdv5"]).read_text())
    assert packaged["images"] == original["images"]
    assert "Apache" in packaged["info"]["attribution"]
    assert "cameratrapai" in packaged["info"]["attribution"]


def test_coco_downloads_honour_the_cache_setting(monkeypatch, tmp_path):
    photo = tmp_path / "src" / "000000000139.jpg"
    photo.parent.mkdir()
    photo.write_bytes(b"\xff\xd8 a photo")
    annotations = tmp_path / "ann.json"
    record = {"file_name": photo.name, "coco_url": photo.as_uri(), "file_size": 10}
    annotations.write_text(json.dumps({"images": [record]}))
    monkeypatch.setenv(download.CACHE_ENV, str(tmp_path / "cache"))
    images = samples.download_coco_mini(annotations=annotations)
    assert images == tmp_path / "cache" / "coco_mini" / "images"
    assert (images / photo.name).read_bytes() == photo.read_bytes()
