"""deepmac_nb: DeepMAC and Deep-MARC partially supervised instance segmentation.

DeepMAC (Birodkar et al., ICCV 2021, arXiv 2104.00613) shows that a *deep* mask head
on per-box feature crops generalises masks to classes that never had mask labels.
This package rebuilds it on TF Model Garden (CenterNet for Deep-MAC, Mask R-CNN for
Deep-MARC) with CPU-sized configs, a synthetic teaching dataset, COCO tooling, box
prompted inference for camera traps (MegaDetector -> iWildCam masks) and notebooks.

Conventions used throughout (docstrings restate them where it matters):
  * boxes are normalized ``[ymin, xmin, ymax, xmax]`` floats unless a name says
    otherwise (``*_abs`` = pixels, ``*_xywh`` = COCO/MegaDetector order);
  * COCO category ids are 1-based and kept as-is end to end;
  * images are ``uint8 [H, W, 3]`` RGB.

Heavy modules (TensorFlow) are imported lazily so ``deepmac-nb --help`` is instant.
"""

__version__ = "0.1.0"

__all__ = ["Predictor", "__version__", "load"]


def __getattr__(name: str):
    # Lazy so that `import deepmac_nb` (and the CLI's --help) does not import TensorFlow.
    if name == "Predictor":
        from deepmac_nb.inference.predictor import Predictor

        return Predictor
    if name == "load":  # any model artifact -> Predictor (deepmac_nb.loading)
        from deepmac_nb.loading import load

        return load
    raise AttributeError(f"module 'deepmac_nb' has no attribute {name!r}")
