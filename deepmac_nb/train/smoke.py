"""The smoke variants' settings: each family's quick shapes experiment shrunk to seconds.

``deepmac_smoke`` and ``deepmarc_smoke`` (registered with the other experiments) apply
these overrides to ``deepmac_shapes_quick`` / ``deepmarc_shapes_quick`` and train on
``shapes_smoke`` (32 + 8 images of 96 px, generated into the cache on first use). The
tests and a first check of an install use them; they check the machinery, not the method.
Plain data, so both families' experiment modules can use it without importing each other.
"""

from __future__ import annotations

# 64 px input, HG-10 of width 8, ResNet-4 mask head (8 channels, S = 16), batch 4.
DEEPMAC = {
    "task": {
        "dataset": "shapes_smoke",
        "model": {
            "input_size": [64, 64, 3],
            "max_num_instances": 8,
            "backbone": {"hourglass": {"input_channel_dims": 8}},
            "mask": {
                "network_type": "resnet4",
                "num_init_channels": 8,
                "mask_size": 16,
                "pixel_embedding_dim": 8,
                "instance_embedding_dim": 8,
            },
        },
        "train_data": {"global_batch_size": 4, "shuffle_buffer_size": 32},
        "validation_data": {"global_batch_size": 4},
    },
    "trainer": {
        "train_steps": 20,
        "steps_per_loop": 5,
        "summary_interval": 5,
        "checkpoint_interval": 10,
        "validation_interval": 10,
        "validation_steps": 2,
    },
}

# 64 px input, ResNet-18 at 1/4 width, 8 x 8 RoI crops (16 x 16 masks), batch 2.
DEEPMARC = {
    "task": {
        "dataset": "shapes_smoke",
        "model": {
            "input_size": [64, 64, 3],
            "backbone": {"resnet": {"depth_multiplier": 0.25}},
            "decoder": {"fpn": {"num_filters": 16}},
            "rpn_head": {"num_filters": 16},
            "detection_head": {"fc_dims": 32},
            "roi_generator": {"num_proposals": 32, "pre_nms_top_k": 128},
            "roi_sampler": {"num_sampled_rois": 16},
            "mask_head": {"num_filters": 8},
            "mask_roi_aligner": {"crop_size": 8},
        },
        "train_data": {
            "global_batch_size": 2,
            "shuffle_buffer_size": 8,
            "parser": {"mask_crop_size": 16, "max_num_instances": 8, "rpn_batch_size_per_im": 8},
        },
        "validation_data": {"global_batch_size": 2},
    },
    "trainer": {
        "train_steps": 2,
        "steps_per_loop": 1,
        "summary_interval": 1,
        "checkpoint_interval": 2,
        "validation_interval": 2,
        "validation_steps": 1,
    },
}


def shrunk(params, overrides: dict):
    """``params`` (an ``ExperimentConfig``) with ``overrides`` applied, strictly."""
    params.override(overrides, is_strict=True)
    return params
