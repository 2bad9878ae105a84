"""deepmac_nb.viz: overlays, boxes, tables, figures and the TensorBoard scalar reader."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest
from matplotlib.figure import Figure

from deepmac_nb import viz


def _square_mask(h=20, w=30, top=5, left=10, size=6) -> np.ndarray:
    mask = np.zeros((1, h, w), bool)
    mask[0, top : top + size, left : left + size] = True
    return mask


def test_boxes_from_masks_are_tight_pixel_edges_and_zero_for_empty():
    masks = np.concatenate([_square_mask(), np.zeros((1, 20, 30), bool)])
    boxes = viz.boxes_from_masks(masks)
    assert boxes.dtype == np.float32 and boxes.shape == (2, 4)
    np.testing.assert_allclose(boxes[0], [5 / 20, 10 / 30, 11 / 20, 16 / 30])
    np.testing.assert_array_equal(boxes[1], 0.0)


def test_binary_masks_thresholds_probabilities_and_keeps_bool():
    probs = np.array([[[0.2, 0.6], [0.5, 0.9]]], np.float32)
    np.testing.assert_array_equal(viz.binary_masks(probs), [[[False, True], [False, True]]])
    assert viz.binary_masks(probs[0]).shape == (1, 2, 2)  # a single [H, W] mask
    assert viz.binary_masks(probs > 0.5).dtype == bool


def test_overlay_tints_inside_the_mask_only_and_leaves_the_input_alone():
    image = np.full((20, 30, 3), 100, np.uint8)
    before = image.copy()
    out = viz.overlay_masks(image, _square_mask(), alpha=1.0, colors=[(255, 0, 0)])
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[7, 12], [255, 0, 0])  # inside (outline is also red)
    np.testing.assert_array_equal(out[0, 0], [100, 100, 100])  # far outside
    np.testing.assert_array_equal(image, before)


def test_overlay_with_half_opacity_blends():
    image = np.zeros((20, 30, 3), np.uint8)
    out = viz.overlay_masks(image, _square_mask(size=8), alpha=0.5, colors=[(200, 100, 0)])
    np.testing.assert_array_equal(out[8, 13], [100, 50, 0])


def test_draw_boxes_outlines_in_pixel_coordinates_and_copies():
    image = np.zeros((10, 10, 3), np.uint8)
    out = viz.draw_boxes(image, [[0.2, 0.2, 0.8, 0.8]], colors=[(0, 255, 0)], thickness=1)
    assert out[2, 2].tolist() == [0, 255, 0] and out[7, 7].tolist() == [0, 255, 0]
    assert out[5, 5].tolist() == [0, 0, 0] and image.max() == 0
    labelled = viz.draw_boxes(image, [[0.0, 0.0, 1.0, 1.0]], labels=["cat"])
    assert labelled.max() > 0


def test_crop_box_grows_by_context_and_stays_inside():
    image = np.arange(100 * 80 * 3, dtype=np.uint8).reshape(100, 80, 3)
    assert viz.crop_box(image, [0.4, 0.5, 0.6, 0.75], context=0.0).shape == (20, 20, 3)
    assert viz.crop_box(image, [0.0, 0.0, 1.0, 1.0], context=0.5).shape == (100, 80, 3)
    assert viz.crop_box(image, [0.5, 0.5, 0.5, 0.5]).shape[:2] == (1, 1)


def test_resize_max_side_only_shrinks():
    image = np.zeros((100, 200, 3), np.uint8)
    assert viz.resize_max_side(image, 50).shape == (25, 50, 3)
    assert viz.resize_max_side(image, 500) is image


def test_png_round_trip_keeps_rgb_order(tmp_path):
    image = np.zeros((4, 5, 3), np.uint8)
    image[..., 0] = 255  # red
    path = viz.save_png(tmp_path / "sub" / "red.png", image)
    back = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(back, image)


def test_table_formats_floats_none_and_escapes_html():
    table = viz.table([{"name": "<b>", "ap": 12.3456, "x": None}], digits=1)
    assert table.to_markdown().splitlines() == [
        "| name | ap | x |",
        "|---|---|---|",
        "| <b> | 12.3 | - |",
    ]
    assert "&lt;b&gt;" in table._repr_html_() and "<td>12.3</td>" in table._repr_html_()


def _metrics(seen, unseen):
    return {"mask": {"all": {"AP": seen}, "seen": {"AP": seen}, "unseen": {"AP": unseen}}}


def test_figures_build_and_save(tmp_path):
    results = {"model": _metrics(30.0, 15.0), "ellipse": _metrics(28.0, None)}
    figures = {
        "methods": viz.plot_method_comparison(results, path=tmp_path / "methods.png"),
        "counts": viz.plot_class_counts(
            [{"name": "disc", "split": "seen", "instances": 3}, {"name": "star", "split": "unseen", "instances": 2}],
            path=tmp_path / "counts.png",
        ),
        "params": viz.plot_ap_vs_params(
            [{"head": "conv2", "params": 7000, "unseen AP": 14.0}, {"head": "ellipse", "params": 0, "unseen AP": 11.0}],
            "unseen AP",
            path=tmp_path / "params.png",
        ),
        "sheet": viz.contact_sheet([np.zeros((8, 8, 3), np.uint8)] * 3, ["a", "b", "c"], ncols=2, title="t"),
    }  # fmt: skip
    assert all(isinstance(f, Figure) for f in figures.values())
    assert len(figures["sheet"].axes) == 3
    for name in ("methods", "counts", "params"):
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert viz.figure_png(figures["sheet"])[:4] == b"\x89PNG"


def _write_scalars(log_dir, values: dict[str, list[float]], start_step: int = 1) -> None:
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default():
        for tag, series in values.items():
            for i, value in enumerate(series):
                tf.summary.scalar(tag, value, step=start_step + i)
    writer.close()


def test_read_scalars_reads_tensor_summaries_and_stops_at_a_partial_record(tmp_path):
    _write_scalars(
        tmp_path / "train", {"total_loss": [3.0, 2.0, 1.5], "mask_loss": [0.7, 0.6, 0.5]}
    )
    event_file = next((tmp_path / "train").glob("events.out.tfevents.*"))
    with open(event_file, "ab") as f:  # a record the writer has not finished yet
        f.write(b"\x40\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00partial")
    scalars = viz.read_scalars(tmp_path)
    assert [s for s, _ in scalars["total_loss"]] == [1, 2, 3]
    np.testing.assert_allclose([v for _, v in scalars["mask_loss"]], [0.7, 0.6, 0.5], rtol=1e-6)
    assert viz.read_scalars(tmp_path / "missing") == {}


def test_read_scalars_keeps_the_last_value_of_a_step_written_twice(tmp_path):
    _write_scalars(tmp_path / "train", {"total_loss": [3.0, 2.0]})
    time.sleep(1.1)  # event file names carry the second: a second file, as after a resume
    _write_scalars(tmp_path / "train", {"total_loss": [9.0]}, start_step=2)
    assert viz.read_scalars(tmp_path)["total_loss"] == [(1, 3.0), (2, 9.0)]


def test_plot_loss_curves_draws_known_tags_and_says_when_empty():
    fig = viz.plot_loss_curves({"total_loss": [(1, 2.0), (2, 1.0)], "other": [(1, 5.0)]})
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["total_loss"]
    empty = viz.plot_loss_curves({})
    assert "no summaries yet" in [t.get_text() for t in empty.axes[0].texts]


def test_live_loss_curve_runs_the_function_and_refreshes(tmp_path, capsys):
    started = threading.Event()

    def train(value):
        started.set()
        _write_scalars(tmp_path / "train", {"total_loss": [2.0, 1.0]})
        time.sleep(0.3)
        return value

    curve = viz.LiveLossCurve(tmp_path, interval=0.05)
    assert curve.run(train, "done") == "done"
    assert started.is_set() and curve.updates >= 2
    assert "step 2" in curve.figure().axes[0].get_title()
    assert "[loss]" in capsys.readouterr().out  # outside Jupyter: one line per refresh


def test_live_loss_curve_reraises_the_training_error(tmp_path):
    def broken():
        raise RuntimeError("loss is NaN")

    with pytest.raises(RuntimeError, match="loss is NaN"):
        viz.LiveLossCurve(tmp_path, interval=0.01).run(broken)


@pytest.fixture(scope="module")
def small_coco(tmp_path_factory):
    from deepmac_nb.data import shapes

    root = tmp_path_factory.mktemp("coco")
    shapes.generate_shapes(root, num_images=6, seed=3, image_size=64, split_name="val")
    return root / "val.json", root / "images"


def test_coco_instances_match_the_annotations(small_coco):
    from deepmac_nb.evaluation import load_coco

    annotations, images = small_coco
    coco = load_coco(annotations)
    image, masks, boxes, ids = viz.coco_instances(coco, images, 1)
    anns = coco.imgToAnns[1]
    assert image.shape == (64, 64, 3) and masks.shape == (len(anns), 64, 64)
    assert ids.tolist() == [a["category_id"] for a in anns]
    np.testing.assert_allclose(viz.boxes_from_masks(masks), boxes, atol=1e-6)


def test_galleries_build_from_a_coco_file(small_coco):
    annotations, images = small_coco
    sheet = viz.coco_image_sheet(annotations, images, count=4, ncols=2)
    assert len(sheet.axes) == 4
    gallery = viz.instance_gallery(annotations, images, range(1, 9), count=5, min_area=1.0)
    assert 1 <= len(gallery.axes) <= 5


def test_round_robin_takes_classes_in_turn():
    anns = [{"category_id": c, "id": i} for i, c in enumerate([1, 1, 1, 2, 3, 3])]
    picked = viz.galleries._round_robin(anns, 4)
    assert [a["category_id"] for a in picked] == [1, 2, 3, 1]


def test_class_counts_legend_colours_match_the_bars():
    rows = [
        {"name": "disc", "split": "seen", "instances": 3},
        {"name": "star", "split": "unseen", "instances": 2},
    ]
    ax = viz.plot_class_counts(rows).axes[0]
    legend = {
        t.get_text(): h.get_facecolor()
        for t, h in zip(ax.get_legend().get_texts(), ax.get_legend().legend_handles, strict=True)
    }
    bars = {r["split"]: p.get_facecolor() for r, p in zip(rows, ax.patches, strict=False)}
    assert legend["seen"] == bars["seen"] and legend["unseen"] == bars["unseen"]
    assert legend["seen"] != legend["unseen"]


def test_mask_sheet_reports_iou_and_keeps_masks_visible():
    from deepmac_nb.evaluation import mask_sheet

    image = np.zeros((40, 40, 3), np.uint8)
    image[...] = (250, 0, 250)  # magenta object on magenta: the tint must not be magenta
    gt = np.zeros((40, 40), bool)
    gt[10:30, 10:30] = True
    box = np.array([0.25, 0.25, 0.75, 0.75], np.float32)
    methods = {"half": lambda img, b: np.stack([gt & (np.arange(40) < 20)[:, None]])}
    fig, rows = mask_sheet.mask_sheet([(image, box, 5, gt)], methods, {5: "star"})
    assert rows == [{"class": "star", "half": 0.5}]
    assert len(fig.axes) == 2 and "IoU 0.50" in fig.axes[1].get_title()
    assert "star" in fig.axes[0].get_title()
    assert mask_sheet.pick_tint(image) != (255, 0, 255)
    assert mask_sheet.iou(gt, np.zeros_like(gt)) == 0.0


def test_plot_titles_never_double_parentheses():
    from deepmac_nb.evaluation import plots

    title = plots._titled("Per-class segm AP", {"model": "quick shapes model (m-300)"})
    assert title == "Per-class segm AP: quick shapes model (m-300)"
    assert plots._titled("x", {"method": "ellipse"}) == "x (ellipse)"


def test_examples_by_class_gives_one_large_instance_per_class_in_order():
    from deepmac_nb.evaluation import mask_sheet

    examples = mask_sheet.examples_by_class([6, 7], min_area=300, max_images=8)
    assert [cid for _, _, cid, _ in examples] == [6, 7]
    for image, box, _, mask in examples:
        assert image.shape[:2] == mask.shape and mask.sum() >= 300
        assert np.allclose(box, viz.boxes_from_masks(mask[None])[0])
    # "largest" is the biggest visible instance of its class over the same images;
    # "first" the earliest one big enough.
    areas = {6: [], 7: []}
    for _, instances in mask_sheet._val_images(0, 8):
        for cid, mask in instances:
            if cid in areas and mask.sum() >= 300:
                areas[cid].append(int(mask.sum()))
    assert any(max(areas[c]) != areas[c][0] for c in (6, 7))  # the two rules differ here
    assert [int(m.sum()) for *_, m in examples] == [max(areas[6]), max(areas[7])]
    first = mask_sheet.examples_by_class([6, 7], min_area=300, max_images=8, pick="first")
    assert [int(m.sum()) for *_, m in first] == [areas[6][0], areas[7][0]]
    with pytest.raises(ValueError, match="pick"):
        mask_sheet.examples_by_class([6], pick="best")


def test_class_mean_iou_scores_every_instance_of_each_class():
    from deepmac_nb.data import shapes
    from deepmac_nb.evaluation import baselines, mask_sheet

    def filled_box(image, boxes):  # an independent box filler, pixel edges by rounding
        h, w = image.shape[:2]
        out = np.zeros((len(boxes), h, w), np.float32)
        for n, (y0, x0, y1, x1) in enumerate(boxes):
            out[n, round(y0 * h) : round(y1 * h), round(x0 * w) : round(x1 * w)] = 1.0
        return out

    rows = mask_sheet.class_mean_iou(
        {"box": baselines.get_mask_fn("box"), "filled": filled_box}, [6, 5], {6: "ring"},
        num_images=6, min_area=100,
    )  # fmt: skip
    config = shapes.ShapesConfig(image_size=128)
    want: dict[int, list[float]] = {6: [], 5: []}
    for index in range(6):
        _, instances = shapes.render_image(index, shapes.VAL_SEED_OFFSET, config)
        for cid, mask in instances:
            if cid in want and mask.sum() >= 100:
                ys, xs = np.nonzero(mask)
                box = np.zeros_like(mask)
                box[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = True
                want[cid].append((mask & box).sum() / (mask | box).sum())
    assert [r["class"] for r in rows] == ["ring", "5"]
    for row, cid in zip(rows, (6, 5), strict=True):
        assert row["instances"] == len(want[cid]) > 0
        assert row["filled"] == pytest.approx(np.mean(want[cid]), abs=2e-3)
        assert row["box"] == pytest.approx(row["filled"], abs=2e-3)
