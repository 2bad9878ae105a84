"""Deep-MARC: the paper's Mask R-CNN variant (Model Garden's deep mask head Mask R-CNN).

``experiments`` holds the task config, named experiments, ``set_mask_head`` and
``register()``; ``predictor`` gives box-prompted masks behind Deep-MAC's ``predict_masks``
interface. Nothing here imports TensorFlow or registers anything on package import.
"""
