"""DeepMAC mask-head architectures: per-instance feature crops -> per-pixel mask logits.

Every head maps ``float32 [N, S, S, C]`` features, one crop per instance in the crop's own
box-aligned frame (row 0 = box ``ymin``, column 0 = box ``xmin``), to ``float32 [N, S, S]``
logits in the same frame. ``N`` may be 0. The head families follow Birodkar et al. 2021:

* ``hourglass{10,20,32,52,100}``: Model Garden's ``hourglass_network.hourglass_XX`` with
  ``initial_downsample=False`` (the paper's strongest heads); ``S`` must be divisible by
  ``2**stages`` (2, 4, 8, 32, 32) because each stage halves and then restores the size.
* ``resnet{4,8,12,16,20}``: the reference ``ResNetMaskNetwork`` (pre-activation basic blocks).
* ``conv2``/``conv4``: a shallow Mask R-CNN-style stack of 3x3 conv + BN + ReLU layers.
* ``fully_connected``: 1x1 conv, flatten, two dense layers; needs the input to be ``S x S``.

All but ``fully_connected`` end with a 1x1 conv (with bias) to one channel, as the reference
``MaskHeadNetwork.project_out`` does.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras
from official.projects.deepmac_maskrcnn.modeling.heads import hourglass_network

# Number of stride-2 stages of each hourglass head, i.e. log2 of the required S divisor.
_HOURGLASS_STAGES = {"hourglass10": 1, "hourglass20": 2, "hourglass32": 3}
_HOURGLASS_STAGES.update({"hourglass52": 5, "hourglass100": 5})
# (filters multiplier of nc, number of blocks) for each stack, as in ResNetMaskNetwork.
_RESNET_STACKS = {
    "resnet4": ((2, 2),),
    "resnet8": ((2, 4),),
    "resnet12": ((2, 6),),
    "resnet16": ((2, 8),),
    "resnet20": ((2, 8), (3, 2)),
}
_CONV_DEPTHS = {"conv2": 2, "conv4": 4}

MASK_HEAD_NAMES: tuple[str, ...] = (
    *_HOURGLASS_STAGES,
    *_RESNET_STACKS,
    *_CONV_DEPTHS,
    "fully_connected",
)

# Epsilon of keras.applications' ResNets, which the OD API's resnet_v1 blocks reuse.
_RESNET_BN_EPSILON = 1.001e-5
_FC_HIDDEN_UNITS = 1024


def _basic_block(x, filters: int, conv_shortcut: bool, prefix: str):
    """Pre-activation basic residual block (OD API ``resnet_v1.block_basic``, stride 1).

    Args:
      x: symbolic ``float32 [N, H, W, Cin]`` tensor.
      filters: output channels.
      conv_shortcut: project the shortcut with a 1x1 conv (needed when ``Cin != filters``).
      prefix: unique layer-name prefix.

    Returns:
      Symbolic ``float32 [N, H, W, filters]`` tensor.
    """
    layers = tf_keras.layers
    preact = layers.BatchNormalization(epsilon=_RESNET_BN_EPSILON, name=f"{prefix}_preact_bn")(x)
    preact = layers.ReLU(name=f"{prefix}_preact_relu")(preact)
    # The reference takes the projected shortcut from the pre-activation, not from x.
    shortcut = layers.Conv2D(filters, 1, name=f"{prefix}_0_conv")(preact) if conv_shortcut else x
    y = preact
    for i in (1, 2):
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{prefix}_{i}_conv")(y)
        y = layers.BatchNormalization(epsilon=_RESNET_BN_EPSILON, name=f"{prefix}_{i}_bn")(y)
        y = layers.ReLU(name=f"{prefix}_{i}_relu")(y)
    return layers.Add(name=f"{prefix}_out")([shortcut, y])


def _resnet_network(name: str, nc: int) -> tf_keras.Sequential:
    """``[N, H, W, C] -> [N, H, W, k*nc]`` ResNet trunk (input 1x1 conv + basic-block stacks)."""
    # The input conv fixes the channel count, so the functional trunk behind it can be built
    # with a static channel dimension whatever C is.
    inputs = tf_keras.Input([None, None, nc])
    x = inputs
    for s, (multiplier, num_blocks) in enumerate(_RESNET_STACKS[name]):
        for b in range(num_blocks):
            x = _basic_block(x, multiplier * nc, conv_shortcut=b == 0, prefix=f"stack{s}_block{b}")
    trunk = tf_keras.Model(inputs, x, name=f"{name}_trunk")
    return tf_keras.Sequential([tf_keras.layers.Conv2D(nc, 1, name="input_conv"), trunk], name=name)


def _conv_network(name: str, nc: int) -> tf_keras.Sequential:
    """``[N, H, W, C] -> [N, H, W, nc]`` stack of (3x3 conv, BN, ReLU) layers."""
    layers = []
    for i in range(_CONV_DEPTHS[name]):
        # No conv bias: the following BN's beta plays that role.
        layers.append(tf_keras.layers.Conv2D(nc, 3, padding="same", use_bias=False))
        layers.append(tf_keras.layers.BatchNormalization(name=f"bn{i}"))
        layers.append(tf_keras.layers.ReLU())
    return tf_keras.Sequential(layers, name=name)


def _fully_connected_network(nc: int, mask_size: int) -> tf_keras.Sequential:
    """``[N, S, S, C] -> [N, S, S]`` logits via 1x1 conv, flatten, Dense(1024, ReLU), Dense(S*S)."""
    return tf_keras.Sequential(
        [
            tf_keras.layers.Conv2D(nc, 1),
            tf_keras.layers.Flatten(),
            tf_keras.layers.Dense(_FC_HIDDEN_UNITS, activation="relu"),
            tf_keras.layers.Dense(mask_size * mask_size),
            tf_keras.layers.Reshape([mask_size, mask_size]),
        ],
        name="fully_connected",
    )


def _build_network(name: str, nc: int, mask_size: int) -> tf_keras.layers.Layer:
    """The head body for ``name``; its output is ``[N, S, S, D]`` (or ``[N, S, S]`` for fc)."""
    if name in _HOURGLASS_STAGES:
        return getattr(hourglass_network, name.replace("hourglass", "hourglass_"))(
            nc, initial_downsample=False
        )
    if name in _RESNET_STACKS:
        return _resnet_network(name, nc)
    if name in _CONV_DEPTHS:
        return _conv_network(name, nc)
    return _fully_connected_network(nc, mask_size)


class MaskHead(tf_keras.layers.Layer):
    """A DeepMAC mask head: instance feature crops to per-pixel mask logits.

    Input ``features``: ``float32 [N, S, S, C]``, one crop per instance (``N`` may be 0), in
    the box-aligned crop frame. Output: ``float32 [N, S, S]`` logits (pre-sigmoid) in that
    same frame. ``S`` need only equal ``mask_size`` for ``fully_connected``; hourglass heads
    need ``S`` divisible by ``2**stages``.

    Example:
      >>> head = MaskHead("resnet4", num_init_channels=8, mask_size=32)
      >>> head(tf.zeros([3, 32, 32, 16])).shape
      TensorShape([3, 32, 32])

    Args:
      network_type: one of ``MASK_HEAD_NAMES``.
      num_init_channels: width ``nc`` of the first block; later blocks use 2-4x ``nc``.
      mask_size: output side ``S``; only ``fully_connected`` depends on it.
      **kwargs: forwarded to ``tf_keras.layers.Layer`` (``name``, ``dtype``, ...).
    """

    def __init__(self, network_type: str, num_init_channels: int, mask_size: int = 32, **kwargs):
        if network_type not in MASK_HEAD_NAMES:
            raise ValueError(
                f"Unknown mask head {network_type!r}; valid names: {', '.join(MASK_HEAD_NAMES)}"
            )
        super().__init__(**kwargs)
        self.network_type = network_type
        self.num_init_channels = int(num_init_channels)
        self.mask_size = int(mask_size)
        self._net = _build_network(network_type, self.num_init_channels, self.mask_size)
        self._project_out = None
        if network_type != "fully_connected":
            self._project_out = tf_keras.layers.Conv2D(1, 1, name="project_out")

    def build(self, input_shape):
        """Validates the crop size and creates all weights with a 1-instance dummy pass.

        The dummy pass is needed because ``call`` skips the network for empty batches, so a
        first call with ``N == 0`` would otherwise leave the head without weights.
        """
        _, height, width, channels = tf.TensorShape(input_shape).as_list()
        stages = _HOURGLASS_STAGES.get(self.network_type, 0)
        for side in (height, width):
            if side is not None and side % 2**stages:
                raise ValueError(
                    f"{self.network_type} needs crop sides divisible by {2**stages}, "
                    f"got input shape {input_shape}"
                )
        dummy_shape = [1, height or self.mask_size, width or self.mask_size, channels]
        self._logits(tf.zeros(dummy_shape, self.compute_dtype), training=False)
        super().build(input_shape)

    def call(self, features, training=None):
        """``float32 [N, S, S, C]`` crops -> ``float32 [N, S, S]`` mask logits."""
        if self._project_out is None:
            empty = tf.zeros([0, self.mask_size, self.mask_size], features.dtype)
        else:
            empty = tf.zeros_like(features[..., 0])
        # Skip empty batches: TF 2.20's oneDNN CPU Conv2D returns its *input* for N == 0 (wrong
        # channel count), and BN in training mode would fold NaN batch moments into its stats.
        return tf.cond(
            tf.shape(features)[0] > 0,
            lambda: self._logits(features, training),
            lambda: empty,
        )

    def _logits(self, features, training):
        out = self._net(features, training=training)
        if isinstance(out, list):  # Hourglass networks return one output per stacked hourglass.
            out = out[-1]
        if self._project_out is None:
            return out
        return self._project_out(out)[..., 0]

    def get_config(self):
        config = super().get_config()
        config.update(
            network_type=self.network_type,
            num_init_channels=self.num_init_channels,
            mask_size=self.mask_size,
        )
        return config


def build_mask_head(
    name: str, num_init_channels: int, mask_size: int = 32, **kwargs
) -> tf_keras.layers.Layer:
    """Builds the mask head ``name`` (one of ``MASK_HEAD_NAMES``) as an unbuilt ``MaskHead``.

    The returned layer maps ``float32 [N, S, S, C]`` crops to ``float32 [N, S, S]`` logits.
    ``kwargs`` go to ``tf_keras.layers.Layer`` (e.g. ``dtype``, ``trainable``); the Keras layer
    name is auto-generated because ``name`` here is the head type.
    Raises ``ValueError`` for an unknown ``name``.
    """
    return MaskHead(name, num_init_channels, mask_size, **kwargs)


def count_params(layer: tf_keras.layers.Layer) -> int:
    """Number of scalars in ``layer``'s weights, trainable plus non-trainable (BN statistics).

    The layer must already be built (called once), otherwise its weights do not exist yet.
    """
    if not layer.built:
        raise ValueError(f"Layer {layer.name!r} is not built; call it on an input first.")
    return int(sum(w.shape.num_elements() for w in layer.weights))
