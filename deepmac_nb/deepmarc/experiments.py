"""Deep-MARC experiments: Model Garden's Mask R-CNN with a deep, class-agnostic mask head.

Model, input pipeline, losses and train loop are Model Garden's own
(``official.projects.deepmac_maskrcnn``): a ResNet-FPN or SpineNet Mask R-CNN whose mask
head (``default`` 4-conv, or Hourglass-20/52/100 via ``mask_head.convnet_variant``) is
trained on ground-truth boxes only (``use_gt_boxes_for_masks``), class-agnostic, with mask
loss only for ``allowed_mask_class_ids``: Model Garden zeroes the class target of every
other instance, which sets its mask-loss weight to exactly 0.

Added here: ``DeepMARCTaskConfig`` (``dataset`` / ``validation_images`` as Deep-MAC's, and
``seed``), the named experiments, ``set_mask_head`` (``--mask-head``) and ``register()``,
which ``deepmac_nb.train.experiments.register()`` calls (nothing registers on import).

Frames and shapes (Model Garden's): the padded input is ``float32 [B, H_in, W_in, 3]``
(image resized with its aspect kept, top-left, ImageNet-normalized); boxes are absolute
pixels ``[ymin, xmin, ymax, xmax]`` of that input; masks are
``crop_size * upsample_factor`` squares in each box's frame. Class ids are COCO's 1-based
ids and ``num_classes`` counts the background class 0 (91 for COCO, 9 for shapes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from official.core import config_definitions as cfg
from official.modeling import optimization
from official.projects.deepmac_maskrcnn.configs import deep_mask_head_rcnn as mg_cfg
from official.projects.deepmac_maskrcnn.tasks import deep_mask_head_rcnn as mg_task
from official.vision.configs import backbones, common, decoders
from official.vision.configs import maskrcnn as mrcnn_cfg

from deepmac_nb import splits
from deepmac_nb.train import registration, smoke

# Mask-head variant -> how often it halves its input: the RoI crop must divide by 2**n.
MASK_HEADS: dict[str, int] = {"default": 0, "hourglass20": 2, "hourglass52": 5, "hourglass100": 5}


@dataclasses.dataclass
class DeepMARCTaskConfig(mg_cfg.DeepMaskHeadRCNNTask):
    """Model Garden's ``DeepMaskHeadRCNNTask`` config plus automatic data preparation.

    Attributes:
      dataset: ``shapes`` or ``coco_mini`` makes ``deepmac-nb train`` prepare the
        TFRecords on first use and fill in the input paths; empty = use the paths.
      validation_images: image folder of the validation set (filled in with ``dataset``).
      shapes_preset, seed, deterministic: as Deep-MAC's (``deepmac_nb.train.config``).
    """

    dataset: str = ""
    shapes_preset: str = "default"
    validation_images: str = ""
    seed: int | None = 0
    deterministic: bool = False


class DeepMARCTask(mg_task.DeepMaskHeadRCNNTask):
    """Model Garden's Deep-MARC task; only a missing ``input_path`` gets a clearer error."""

    def build_inputs(self, params, input_context=None, dataset_fn=None):
        if not params.input_path:
            raise ValueError(
                "No input_path: set task.train_data.input_path / validation_data.input_path "
                "to TFRecords from `deepmac-nb prepare`, or use an experiment with `dataset`."
            )
        return super().build_inputs(params, input_context=input_context, dataset_fn=dataset_fn)


def is_deepmarc(params: cfg.ExperimentConfig) -> bool:
    """True for a Mask R-CNN deep-mask-head config (ours or Model Garden's own)."""
    return isinstance(params.task, mg_cfg.DeepMaskHeadRCNNTask)


def set_mask_head(params: cfg.ExperimentConfig, name: str) -> cfg.ExperimentConfig:
    """Selects the mask-head network by name (``MASK_HEADS``) in place; returns ``params``.

    Raises ``ValueError`` for an unknown name, or when the RoI crop
    (``task.model.mask_roi_aligner.crop_size``) cannot be halved as often as that head does.
    """
    if name not in MASK_HEADS:
        raise ValueError(f"unknown mask head {name!r}; valid: {', '.join(MASK_HEADS)}")
    crop = params.task.model.mask_roi_aligner.crop_size
    factor = 2 ** MASK_HEADS[name]
    if crop % factor:
        raise ValueError(
            f"mask head {name!r} halves its input {MASK_HEADS[name]} times, so "
            f"task.model.mask_roi_aligner.crop_size ({crop}) must be a multiple of {factor}."
        )
    params.task.model.mask_head.convnet_variant = name
    return params


def _from_model_garden(factory: Callable[[], cfg.ExperimentConfig], yaml: dict):
    """Model Garden's base experiment as a ``DeepMARCTaskConfig``, plus ``yaml`` overrides."""
    base = factory()
    task = DeepMARCTaskConfig()
    task.override(base.task.as_dict(), is_strict=True)
    params = cfg.ExperimentConfig(
        runtime=base.runtime, task=task, trainer=base.trainer, restrictions=base.restrictions
    )
    params.override(yaml, is_strict=True)
    # No bucket paths: point these at `deepmac-nb prepare coco` output (as for Deep-MAC).
    params.task.train_data.input_path = ""
    params.task.validation_data.input_path = ""
    params.task.annotation_file = ""
    return params


def _deep_head(crop: int = 32, nc: int = 64, variant: str = "hourglass52") -> dict:
    """The paper's mask branch: class-agnostic deep head on GT-box crops, 2x upsampling."""
    return {
        "mask_head": {
            "class_agnostic": True,
            "convnet_variant": variant,
            "num_filters": nc,
            "upsample_factor": 2,
        },
        "mask_roi_aligner": {"crop_size": crop},
        "use_gt_boxes_for_masks": True,
    }


def _paper_r50(allowed: str) -> cfg.ExperimentConfig:
    """``deep_mask_head_rcnn_voc_r50_hg52.yaml`` on ``deep_mask_head_rcnn_resnetfpn_coco``."""
    yaml = {
        "task": {
            "allowed_mask_class_ids": list(splits.resolve_split(allowed)),
            "per_category_metrics": True,
            "init_checkpoint": "gs://tf_model_garden/vision/resnet50_imagenet/ckpt-28080",
            "model": {**_deep_head(), "backbone": {"type": "resnet", "resnet": {"model_id": 50}}},
            "train_data": {"global_batch_size": 64},
            "validation_data": {"global_batch_size": 32},
        },
        "trainer": {
            "train_steps": 70000,
            "validation_steps": 156,  # 5000 / 32
            "optimizer_config": {
                "learning_rate": {"type": "stepwise", "stepwise": {"boundaries": [50000, 65000]}}
            },
        },
    }
    return _from_model_garden(mg_cfg.deep_mask_head_rcnn_resnetfpn_coco, yaml)


def _spinenet143_model() -> dict:
    """The model block of Model Garden's SpineNet-143 deep-mask-head yaml files."""
    return {
        **_deep_head(),
        "input_size": [1280, 1280, 3],
        "min_level": 3,
        "max_level": 7,
        "anchor": {"anchor_size": 4.0, "num_scales": 3},
        "backbone": {
            "type": "spinenet",
            "spinenet": {"model_id": "143", "stochastic_depth_drop_rate": 0.2},
        },
        "decoder": {"type": "identity"},
        "norm_activation": {"norm_epsilon": 0.001, "norm_momentum": 0.99, "use_sync_bn": True},
        "detection_generator": {"pre_nms_top_k": 1000},
    }


def _paper_spinenet143(allowed: str) -> cfg.ExperimentConfig:
    """``deep_mask_head_rcnn_{voc,nonvoc}_spinenet143_hg52.yaml`` on the SpineNet base."""
    schedule = {
        "learning_rate": {
            "type": "stepwise",
            "stepwise": {"boundaries": [219450, 226380], "values": [0.32, 0.032, 0.0032]},
        },
        "warmup": {
            "type": "linear",
            "linear": {"warmup_steps": 2000, "warmup_learning_rate": 0.0067},
        },
    }
    parser = {"aug_rand_hflip": True, "aug_scale_min": 0.1, "aug_scale_max": 2.0}
    yaml = {
        "task": {
            "allowed_mask_class_ids": list(splits.resolve_split(allowed)),
            "per_category_metrics": True,
            "model": _spinenet143_model(),
            "losses": {"l2_weight_decay": 0.00004},
            "train_data": {"global_batch_size": 256, "parser": parser},
        },
        "trainer": {"train_steps": 231000, "optimizer_config": schedule},
    }
    return _from_model_garden(mg_cfg.deep_mask_head_rcnn_spinenet_coco, yaml)


# The data settings every paper experiment needs on the command line (COCO TFRecords).
PAPER_DATA_OVERRIDE = (
    "--params-override task.train_data.input_path=coco/train*,"
    "task.validation_data.input_path=coco/val*,task.annotation_file=coco/instances_val2017.json"
)


def deepmarc_r50_hg52_voc():
    """ResNet-50 FPN Mask R-CNN, HG-52 mask head (nc 64, crop 32 -> 64x64 masks), masks for
    the 20 VOC classes only, 1024 px, batch 64, 70k steps, bfloat16.

    Command: ``deepmac-nb train --experiment deepmarc_r50_hg52_voc --model-dir DIR
    --mode train_and_eval`` plus the ``PAPER_DATA_OVERRIDE`` paths (TFRecords from
    ``deepmac-nb prepare coco``). Hardware: TPU v3-32 (Model Garden's setup) or 8 GPUs.
    Time: not measured here (estimate: half a day to a day on a v3-32). Result (Model
    Garden README): 33.1 mask AP on the 60 non-VOC classes of COCO val2017.
    """
    return _paper_r50("voc")


def deepmarc_spinenet143_hg52_voc():
    """SpineNet-143 Mask R-CNN (1280 px, batch 256, 231k steps), HG-52 mask head, masks for
    VOC only (``deep_mask_head_rcnn_voc_spinenet143_hg52.yaml``).

    Command: ``deepmac-nb train --experiment deepmarc_spinenet143_hg52_voc --model-dir DIR
    --mode train_and_eval`` plus the ``PAPER_DATA_OVERRIDE`` paths. Hardware: a large TPU
    slice (batch 256 at 1280 px). Time: not measured here (estimate: days).
    Result (Model Garden README): 38.7 mask AP on the non-VOC classes of COCO val2017.
    """
    return _paper_spinenet143("voc")


def deepmarc_spinenet143_hg52_non_voc():
    """As ``deepmarc_spinenet143_hg52_voc`` with masks for the 60 non-VOC classes only
    (``deep_mask_head_rcnn_nonvoc_spinenet143_hg52.yaml``); mask AP is read on VOC.

    Command: ``deepmac-nb train --experiment deepmarc_spinenet143_hg52_non_voc --model-dir
    DIR --mode train_and_eval`` plus the ``PAPER_DATA_OVERRIDE`` paths. Hardware and
    time: as the VOC config.
    Result: Model Garden publishes no number for this direction; compare with the VOC
    config and Deep-MAC's ``deepmac_hg104_1024_non_voc``.
    """
    return _paper_spinenet143("non_voc")


def _deep_head_configs(crop: int, nc: int, variant: str) -> dict:
    """``_deep_head`` as config objects (for building a model config directly)."""
    values = _deep_head(crop, nc, variant)
    return {
        "mask_head": mg_cfg.DeepMaskHead(**values["mask_head"]),
        "mask_roi_aligner": mrcnn_cfg.MaskROIAligner(**values["mask_roi_aligner"]),
        "use_gt_boxes_for_masks": True,
    }


def cpu_model(num_classes: int, input_px: int, width: float, nc: int, crop: int = 16):
    """A laptop-sized Deep-MARC: ResNet-18 (``width`` x channels) FPN, slim heads,
    Hourglass-20 mask head on ``crop x crop`` GT-box crops -> ``2 * crop`` masks."""
    return mg_cfg.DeepMaskHeadRCNN(
        num_classes=num_classes,
        input_size=[input_px, input_px, 3],
        min_level=2,
        max_level=6,
        # Small objects at 128-256 px: anchors of 16 px at stride 4 up to 256 px.
        anchor=mrcnn_cfg.Anchor(anchor_size=4.0),
        backbone=backbones.Backbone(
            type="resnet", resnet=backbones.ResNet(model_id=18, depth_multiplier=width)
        ),
        decoder=decoders.Decoder(type="fpn", fpn=decoders.FPN(num_filters=64)),
        rpn_head=mrcnn_cfg.RPNHead(num_filters=64),
        detection_head=mrcnn_cfg.DetectionHead(num_convs=0, num_fcs=2, fc_dims=256),
        roi_generator=mrcnn_cfg.ROIGenerator(
            pre_nms_top_k=1000, num_proposals=256, test_pre_nms_top_k=500, test_num_proposals=100
        ),
        roi_sampler=mrcnn_cfg.ROISampler(num_sampled_rois=128),
        detection_generator=mrcnn_cfg.DetectionGenerator(pre_nms_top_k=500, max_num_detections=50),
        **_deep_head_configs(crop, nc, "hourglass20"),
        norm_activation=common.NormActivation(
            use_sync_bn=False, norm_momentum=0.99, norm_epsilon=0.001
        ),
    )


def cpu_data(
    batch: int, is_training: bool, mask_px: int, instances: int, rpn_anchors: int
) -> mrcnn_cfg.DataConfig:
    """float32 input (no bfloat16 on CPUs); GT masks cropped straight to the mask size.

    ``rpn_anchors`` is sampled per image for the RPN loss. Model Garden divides that loss
    by ``num_sampled_rois`` (not by this count), so keep their ratio at its defaults'
    256 / 512 to keep its loss balance.
    """
    return mrcnn_cfg.DataConfig(
        is_training=is_training,
        global_batch_size=batch,
        dtype="float32",
        shuffle_buffer_size=500,
        drop_remainder=is_training,
        parser=mrcnn_cfg.Parser(
            aug_rand_hflip=True,
            aug_scale_min=0.8,
            aug_scale_max=1.25,
            max_num_instances=instances,
            mask_crop_size=mask_px,
            rpn_batch_size_per_im=rpn_anchors,
        ),
    )


def cpu_trainer(steps: int, lr: float, warmup: int, ckpt_every: int, log_every: int):
    """SGD + momentum (Model Garden's Mask R-CNN recipe), cosine decay, linear warm-up."""
    opt = optimization.OptimizationConfig(
        {
            "optimizer": {"type": "sgd", "sgd": {"momentum": 0.9, "global_clipnorm": 10.0}},
            "learning_rate": {
                "type": "cosine",
                "cosine": {"initial_learning_rate": lr, "decay_steps": steps},
            },
            "warmup": {
                "type": "linear",
                "linear": {"warmup_steps": warmup, "warmup_learning_rate": lr / 10},
            },
        }
    )
    return cfg.TrainerConfig(
        train_steps=steps,
        optimizer_config=opt,
        checkpoint_interval=ckpt_every,
        summary_interval=log_every,
        steps_per_loop=log_every,
        validation_interval=ckpt_every,
        validation_steps=-1,
        max_to_keep=3,
        # As Deep-MAC's: a non-finite loss stops at once and the last good checkpoint stays.
        recovery_max_trials=0,
        loss_upper_bound=1e6,
    )


def _cpu_experiment(model, allowed: str, dataset: str, batch: int, instances: int, trainer):
    """A CPU experiment on ``dataset`` (prepared on first use), masks only for ``allowed``."""
    mask_px = model.mask_roi_aligner.crop_size * model.mask_head.upsample_factor
    anchors = model.roi_sampler.num_sampled_rois // 2
    return cfg.ExperimentConfig(
        task=DeepMARCTaskConfig(
            model=model,
            train_data=cpu_data(batch, True, mask_px, instances, anchors),
            validation_data=cpu_data(batch, False, mask_px, instances, anchors),
            losses=mrcnn_cfg.Losses(l2_weight_decay=0.00004),
            allowed_mask_class_ids=list(splits.resolve_split(allowed)),
            per_category_metrics=True,
            init_checkpoint="",
            dataset=dataset,
        ),
        trainer=trainer,
    )


def deepmarc_shapes_quick():
    """The embedded synthetic shapes set (ids 1..8); masks for the 4 ``seen`` shapes only.

    Command: ``deepmac-nb train --experiment deepmarc_shapes_quick --model-dir runs/marc``.
    Hardware: 2 CPU cores. Time: 21 min measured (1.2-1.3 steps/s while another training
    shared the cores; data generated on first use, ~30 s).
    Result (one run, 200 val images, ``deepmac-nb evaluate --model runs/marc``): mask AP
    with GT boxes seen 56.5 / unseen 27.0; with its own detections seen 31.6 / unseen
    11.9 (box AP 30.7); with ``--mask-head default`` (4-conv) GT boxes give 43.6 / 16.9.
    Deep-MAC's ``deepmac_shapes_quick`` at the same 1500 steps: GT
    boxes 58.0 / 32.0, detected 13.3 / 4.3 (box AP 11.7); docs/results.md.
    """
    model = cpu_model(num_classes=9, input_px=128, width=0.5, nc=16)
    trainer = cpu_trainer(1500, 0.02, 100, ckpt_every=250, log_every=25)
    return _cpu_experiment(model, "seen", "shapes", batch=8, instances=16, trainer=trainer)


def deepmarc_coco_mini_voc():
    """Real COCO photos from the sample data (214 images), masks for VOC classes only,
    validated on ``val_dev.json`` (non-VOC mask AP is the headline).

    Command: ``deepmac-nb train --experiment deepmarc_coco_mini_voc --model-dir runs/marc-coco``.
    Hardware: 2 CPU cores. Time: ~1 h (~0.8 steps/s at 256 px). Result: far below the paper (no ImageNet
    initialization, 214 images); the point is the seen/unseen gap next to Deep-MAC's
    ``deepmac_coco_mini_voc``.
    """
    model = cpu_model(num_classes=91, input_px=256, width=0.5, nc=16)
    trainer = cpu_trainer(3000, 0.02, 200, ckpt_every=500, log_every=50)
    return _cpu_experiment(model, "voc", "coco_mini", batch=8, instances=32, trainer=trainer)


def deepmarc_smoke():
    """``deepmarc_shapes_quick`` shrunk to seconds (``train.smoke``): 64 px, 2 steps.

    Command: ``deepmac-nb train --experiment deepmarc_smoke --model-dir runs/marc-smoke``.
    Hardware: 2 CPU cores. Time: ~40 s (mostly graph tracing). Result: none; it checks
    the machinery, not the method (the tests train it)."""
    return smoke.shrunk(deepmarc_shapes_quick(), smoke.DEEPMARC)


EXPERIMENTS: dict[str, Callable[[], cfg.ExperimentConfig]] = {
    "deepmarc_r50_hg52_voc": deepmarc_r50_hg52_voc,
    "deepmarc_spinenet143_hg52_voc": deepmarc_spinenet143_hg52_voc,
    "deepmarc_spinenet143_hg52_non_voc": deepmarc_spinenet143_hg52_non_voc,
    "deepmarc_shapes_quick": deepmarc_shapes_quick,
    "deepmarc_coco_mini_voc": deepmarc_coco_mini_voc,
    "deepmarc_smoke": deepmarc_smoke,
}


def register() -> None:
    """Registers the task class and every Deep-MARC experiment with Model Garden (idempotent)."""
    registration.register_family(DeepMARCTaskConfig, DeepMARCTask, EXPERIMENTS)
