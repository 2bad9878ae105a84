"""Inference: the box-prompted ``Predictor``, SavedModel/TFLite export, the pretrained
official checkpoint, and MegaDetector -> iWildCam instance masks (``deepmac-nb segment``)."""
