"""Shared fixtures: a tiny synthetic TFRecord set and tiny experiment configs."""

from __future__ import annotations

import os

# Keep TensorFlow's C++ chatter out of test logs; must be set before TF is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest


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


def tiny_params(data_root, steps=20, head="resnet4", **trainer):
    """``deepmac_shapes_quick`` shrunk to seconds: 64 px, HG-10 at width 8, S = 16."""
    from deepmac_nb.train import experiments

    params = experiments.get_experiment("deepmac_shapes_quick")
    params.override(
        {
            "task": {
                "dataset": "",
                "model": {
                    "input_size": [64, 64, 3],
                    "max_num_instances": 8,
                    "backbone": {"hourglass": {"input_channel_dims": 8}},
                    "mask": {"network_type": head, "num_init_channels": 8, "mask_size": 16,
                             "pixel_embedding_dim": 8, "instance_embedding_dim": 8},
                },
                "train_data": {"input_path": str(data_root / "tfrecords" / "train-*.tfrecord"),
                               "global_batch_size": 4, "shuffle_buffer_size": 32},
                "validation_data": {"input_path": str(data_root / "tfrecords" / "val-*.tfrecord"),
                                    "global_batch_size": 4},
            },
            "trainer": {"train_steps": steps, "steps_per_loop": 5, "summary_interval": 5,
                        "checkpoint_interval": 10, "validation_interval": 10,
                        "validation_steps": 2, **trainer},
        },
        is_strict=True,
    )  # fmt: skip
    return params
