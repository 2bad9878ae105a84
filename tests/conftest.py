"""Shared fixtures: an empty package cache per session, a tiny synthetic TFRecord set and
the smoke experiments pointed at it."""

from __future__ import annotations

import os

# Keep TensorFlow's C++ chatter out of test logs; must be set before TF is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The notebooks' QUICK schedule, shortened (600 steps for users): the notebook tests check
# that each notebook runs and writes its outputs, not how good a 600-step model is. Set
# before deepmac_nb is imported; the notebook kernels inherit it.
os.environ.setdefault("DEEPMAC_NB_QUICK_STEPS", "100")

import pytest

from deepmac_nb.train import smoke

# The Deep-MARC smoke model block, for tests that build a model without the experiment.
DEEPMARC_TINY_MODEL = smoke.DEEPMARC["task"]["model"]
# Set this to reuse a cache folder across sessions (e.g. the network tests' downloads).
TEST_CACHE_ENV = "DEEPMAC_NB_TEST_CACHE"


@pytest.fixture(scope="session", autouse=True)
def package_cache(tmp_path_factory):
    """``$DEEPMAC_NB_CACHE`` for the whole session: an empty temporary folder (or
    ``$DEEPMAC_NB_TEST_CACHE``), never the user's cache, so tests that train the shared
    models really train them and nothing stale is loaded. Session scope: tests that share
    a cached model or data set within the session still do; subprocesses inherit it."""
    from deepmac_nb import download

    path = os.environ.get(TEST_CACHE_ENV) or str(tmp_path_factory.mktemp("package_cache"))
    before = os.environ.get(download.CACHE_ENV)
    os.environ[download.CACHE_ENV] = path
    yield path
    if before is None:
        os.environ.pop(download.CACHE_ENV, None)
    else:
        os.environ[download.CACHE_ENV] = before


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory):
    """32 train + 8 val synthetic images at 96 px, with TFRecords (built once per session)."""
    from deepmac_nb.data import shapes

    root = tmp_path_factory.mktemp("shapes")
    shapes.generate_shapes(
        root, num_images=32, seed=0, image_size=96, split_name="train", tfrecords=True
    )
    shapes.generate_shapes(
        root, num_images=8, seed=1, image_size=96, split_name="val", tfrecords=True
    )
    return root


def tiny_params(data_root, steps=20, head="resnet4", experiment="deepmac_smoke", **trainer):
    """A smoke experiment (``deepmac_smoke`` / ``deepmarc_smoke``) reading the TFRecords of
    ``data_root`` (the ``tiny_shapes`` fixture); ``head``: Deep-MAC's mask head."""
    from deepmac_nb.train import experiments

    params = experiments.get_experiment(experiment)
    records = data_root / "tfrecords"
    task = {
        "dataset": "",
        "train_data": {"input_path": str(records / "train-*.tfrecord")},
        "validation_data": {"input_path": str(records / "val-*.tfrecord")},
    }
    if experiment.startswith("deepmac_"):
        task["model"] = {"mask": {"network_type": head}}
    params.override({"task": task, "trainer": {"train_steps": steps, **trainer}}, is_strict=True)
    return params


def smoke_train_command(data_root, model_dir, steps, *extra, every=2):
    """``python -m deepmac_nb.cli train --experiment deepmac_smoke ...`` on ``data_root``'s
    TFRecords (CPU strategy), logging and checkpointing every ``every`` steps; ``extra``
    arguments are appended (e.g. ``--seed 3``)."""
    import sys

    override = (
        f"task.dataset=,task.train_data.input_path={data_root}/tfrecords/train-*.tfrecord,"
        f"trainer.steps_per_loop={every},trainer.checkpoint_interval={every},"
        f"trainer.summary_interval={every}"
    )
    return [sys.executable, "-m", "deepmac_nb.cli", "train", "--experiment", "deepmac_smoke",
            "--model-dir", str(model_dir), "--strategy", "cpu", "--steps", str(steps),
            *extra, "--params-override", override]  # fmt: skip


_LOAD_SCRIPT = """
import json, sys
import numpy as np
import tensorflow as tf
fn = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
data = np.load(sys.argv[2])
out = fn(input_tensor=tf.constant(data["image"]), boxes=tf.constant(data["boxes"]))
np.savez(sys.argv[3], **{k: v.numpy() for k, v in out.items()})
specs = fn.structured_input_signature[1]
print(json.dumps({
    "modules": sorted({m.split(".")[0] for m in sys.modules}),
    "inputs": {k: [v.dtype.name, v.shape.as_list()] for k, v in specs.items()},
}))
"""


def run_signature_in_subprocess(saved, image, boxes, tmp_path):
    """Calls a SavedModel's ``serving_default(input_tensor=image[None], boxes=boxes[None])``
    in a fresh Python that imports only TensorFlow and numpy.

    Returns ``(outputs dict of numpy arrays, info)`` where ``info`` has ``modules`` (top-level
    packages imported by the loader) and ``inputs`` (``name -> [dtype, shape]``).
    """
    import json
    import subprocess
    import sys

    import numpy as np

    np.savez(tmp_path / "in.npz", image=image[None], boxes=boxes[None])
    (tmp_path / "load.py").write_text(_LOAD_SCRIPT)
    cmd = [sys.executable, str(tmp_path / "load.py"), str(saved), str(tmp_path / "in.npz")]
    proc = subprocess.run([*cmd, str(tmp_path / "out.npz")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    return dict(np.load(tmp_path / "out.npz")), info


def camera_traps_or_skip(name: str = "mdv5"):
    """The sample camera-trap set ``name`` (``samples.camera_traps``), or skip the test
    when the sample data is absent."""
    from deepmac_nb.data import samples

    try:
        return samples.camera_traps(name)
    except samples.SampleDataMissing as exc:
        pytest.skip(f"camera-trap sample data absent: {exc}")


def camera_trap_prompts(limit_boxes=40):
    """``(image uint8 [H, W, 3], boxes float32 [N, 4])`` for every real camera-trap photo
    of the sample data (MegaDetector v5 and Serengeti boxes), or skip when it is absent."""
    import numpy as np

    from deepmac_nb.inference import iwildcam, megadetector

    sets = [camera_traps_or_skip("mdv5"), camera_traps_or_skip("serengeti_gt")]
    prompts = []
    for ds in sets:
        for entry in megadetector.read_detections(ds.detections, ds.images).images:
            boxes = np.array([d.box for d in entry.detections], np.float32).reshape(-1, 4)
            prompts.append((iwildcam.load_rgb(ds.images / entry.file), boxes[:limit_boxes]))
    return prompts


def reframe_box_masks_numpy(box_masks, boxes, height, width):
    """Independent numpy port of the OD API's ``ops.reframe_box_masks_to_image_masks``
    (what the official DeepMAC Colab pastes masks with): box-frame masks ``[N, S, S]`` and
    normalized boxes ``[N, 4]`` -> image masks ``float32 [N, height, width]``.

    The OD API maps the unit square into each box's frame (``(0 - min) / max(extent,
    1e-4)``, ``(1 - min) / ...``) and samples it with ``tf.image.crop_and_resize``
    (bilinear, extrapolation 0); this writes that sampling out per pixel.
    """
    import numpy as np

    box_masks = np.asarray(box_masks, np.float64)
    out = np.zeros((len(box_masks), height, width), np.float32)
    for n, (mask, box) in enumerate(zip(box_masks, np.asarray(boxes, np.float64), strict=True)):
        size_y, size_x = mask.shape
        extent = np.maximum(box[2:] - box[:2], 1e-4)
        y1, x1 = -box[:2] / extent
        y2, x2 = (1.0 - box[:2]) / extent
        for i in range(height):
            in_y = y1 * (size_y - 1) + i * (y2 - y1) * (size_y - 1) / (height - 1) if height > 1 \
                else 0.5 * (y1 + y2) * (size_y - 1)  # fmt: skip
            if in_y < 0 or in_y > size_y - 1:
                continue
            top, bottom = int(np.floor(in_y)), int(np.ceil(in_y))
            dy = in_y - top
            for j in range(width):
                in_x = x1 * (size_x - 1) + j * (x2 - x1) * (size_x - 1) / (width - 1) if width > 1 \
                    else 0.5 * (x1 + x2) * (size_x - 1)  # fmt: skip
                if in_x < 0 or in_x > size_x - 1:
                    continue
                left, right = int(np.floor(in_x)), int(np.ceil(in_x))
                dx = in_x - left
                t = mask[top, left] + (mask[top, right] - mask[top, left]) * dx
                b = mask[bottom, left] + (mask[bottom, right] - mask[bottom, left]) * dx
                out[n, i, j] = t + (b - t) * dy
    return out


def tflite_ops_by_signature(path):
    """``{signature key: sorted op names}`` of a ``.tflite`` file, read from the flatbuffer:
    every op of each signature's subgraph, and of the subgraphs its control flow calls
    (``tf.lite.Interpreter``'s op listing covers subgraph 0 only). A custom op (Flex ops
    are custom ops) is listed as ``CUSTOM:<its code>``."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.python import schema_util

    model = schema.ModelT.InitFromPackedBuf(bytearray(open(path, "rb").read()), 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}

    def op_name(op):
        code = model.operatorCodes[op.opcodeIndex]
        builtin = schema_util.get_builtin_code_from_operator_code(code)
        if builtin == schema.BuiltinOperator.CUSTOM:
            custom = (
                code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
            )
            return f"CUSTOM:{custom}"
        return names[builtin]

    def called(op):  # subgraphs a control-flow op runs (WHILE, IF, CALL_ONCE, ...)
        options = op.builtinOptions
        return [getattr(options, a) for a in vars(options) if a.endswith("SubgraphIndex")] \
            if options is not None else []  # fmt: skip

    ops = {}
    for signature in model.signatureDefs or []:
        todo, done, names_here = [signature.subgraphIndex], set(), set()
        while todo:
            index = todo.pop()
            if index in done:
                continue
            done.add(index)
            for op in model.subgraphs[index].operators or []:
                names_here.add(op_name(op))
                todo += called(op)
        key = signature.signatureKey
        ops[key.decode() if isinstance(key, bytes) else key] = sorted(names_here)
    return ops
