# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# <!-- The badges point at "deepmac-nb/deepmac_nb", a placeholder GitHub org/repository:
#      replace it with the project's real address when publishing. -->
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/deepmac-nb/deepmac_nb/blob/main/notebooks/02_train.ipynb)
# [![Open in Kaggle](https://kaggle.com/static/images/open-in-kaggle.svg)](https://kaggle.com/kernels/welcome?src=https://github.com/deepmac-nb/deepmac_nb/blob/main/notebooks/02_train.ipynb)
#
# # 02 · Training with partial supervision
#
# One code path trains on a laptop CPU, a Colab/Kaggle GPU or a TPU: Model Garden's
# train loop (`runner.train`) under a `tf.distribute` strategy picked for the hardware.
# This notebook
#
# 1. picks an experiment (a named, complete config),
# 2. detects the accelerator and builds the strategy,
# 3. trains while drawing the loss curves live (read from the TensorBoard event files),
# 4. shows how a run resumes from its latest checkpoint.

# %%
# Colab / Kaggle: installs deepmac_nb from its repository; its pyproject pins TensorFlow and
# Model Garden (2.20). Does nothing where deepmac_nb is importable (a checkout after
# `make venv`). If TensorFlow was imported before the install, restart the session once.
try:
    import deepmac_nb
except ImportError:
    from IPython import get_ipython

    get_ipython().run_line_magic(
        "pip", "install -q 'deepmac_nb @ git+https://github.com/deepmac-nb/deepmac_nb.git@v0.1.0'"
    )

# %% tags=["parameters"]
QUICK = True  # True: 600 steps (~4 min on a CPU); False: the experiment's own length
EXPERIMENT = "deepmac_shapes_quick"  # any name of the table below
STEPS = None  # None: QUICK -> tutorial.QUICK_STEPS, else the experiment's train_steps
MASK_HEAD = None  # e.g. "hourglass52", "resnet4", "conv2"; None: the experiment's
SEED = None  # None: the experiment's task.seed (0); weights, data order, augmentation
PARAMS_OVERRIDE = ""  # e.g. "task.train_data.input_path=coco/train*" for paper configs
STRATEGY = "auto"  # auto | tpu | mirrored | one_device | cpu
# None: the quick experiment trains the model all notebooks share (in the cache);
# other experiments train into OUTPUT_DIR/model.
MODEL_DIR = None
LAUNCH_TENSORBOARD = False  # True: show TensorBoard inside the notebook (Colab, Kaggle)
OUTPUT_DIR = "runs/notebooks/02_train"

# %%
# %matplotlib inline
import time
from pathlib import Path

from deepmac_nb import tutorial, viz

tutorial.quiet_tensorflow()
import tensorflow as tf

from deepmac_nb.train import experiments, runner
from deepmac_nb.train import params as train_params

out = Path(OUTPUT_DIR)
out.mkdir(parents=True, exist_ok=True)
steps = STEPS or (tutorial.QUICK_STEPS if QUICK else None)
shared = (
    EXPERIMENT == tutorial.QUICK_EXPERIMENT
    and MODEL_DIR is None
    and not PARAMS_OVERRIDE
    and SEED is None
)
model_dir = (
    tutorial.quick_model_dir(steps, MASK_HEAD) if shared else Path(MODEL_DIR or out / "model")
)

# %% [markdown]
# ## 1. Pick an experiment
#
# Every experiment is a complete Model Garden `ExperimentConfig`: model, data, optimizer,
# schedule. The `deepmac_hg104_*` ones reproduce the paper on COCO (TPU/GPU scale, point
# them at TFRecords from notebook 01 with `PARAMS_OVERRIDE`); the small ones run on a CPU
# and prepare their own data. The same names work on the command line:
# `deepmac-nb train --experiment NAME --model-dir DIR`.

# %%
viz.table(
    [
        {"experiment": name, "what": (factory.__doc__ or "").strip().splitlines()[0]}
        for name, factory in experiments.all_experiments().items()
    ]
)

# %%
params = train_params.build_params(
    EXPERIMENT, overrides=[PARAMS_OVERRIDE], mask_head=MASK_HEAD, steps=steps, seed=SEED
)
task, trainer = params.task, params.trainer
viz.table(
    [
        {"setting": "input size", "value": str(task.model.input_size)},
        {"setting": "mask head", "value": task.model.mask.network_type},
        {"setting": "masks for classes", "value": task.allowed_mask_classes},
        {"setting": "batch size", "value": task.train_data.global_batch_size},
        {"setting": "train steps", "value": trainer.train_steps},
        {"setting": "seed", "value": task.seed},
        {"setting": "checkpoint interval (steps)", "value": trainer.checkpoint_interval},
        {"setting": "steps per loop", "value": trainer.steps_per_loop},
        {"setting": "model dir", "value": str(model_dir)},
    ]
)

# %% [markdown]
# `masks for classes` is the partial supervision: only instances of these classes get a
# mask loss; every instance gets the detection losses. `seed` seeds the weights, the data
# order and each image's augmentation (`params.yaml` in the model dir records it). Two
# runs with one seed on one machine follow the same loss curve closely; with
# `PARAMS_OVERRIDE = "task.deterministic=true"` bit for bit.
#
# ## 2. Hardware and strategy
#
# `runner.select_strategy("auto")` tries a TPU (when Colab/Kaggle says there is one),
# then all GPUs (mirrored when more than one), then the CPU. The global batch is split
# across the replicas.

# %%
strategy = runner.select_strategy(STRATEGY)
print(f"{type(strategy).__name__}: {strategy.num_replicas_in_sync} replica(s)")
print("replica devices:", list(strategy.extended.worker_devices))
print("all devices:", [d.name for d in tf.config.list_logical_devices()])

# %% [markdown]
# ## 3. TensorBoard
#
# The train loop writes every loss term, the learning rate and steps/s under
# `<model dir>/train`. Locally run the printed command and open http://localhost:6006;
# on Colab or Kaggle set `LAUNCH_TENSORBOARD = True`.

# %%
print(f"tensorboard --logdir {model_dir}")
if LAUNCH_TENSORBOARD:
    from IPython import get_ipython

    get_ipython().run_line_magic("load_ext", "tensorboard")
    get_ipython().run_line_magic("tensorboard", f"--logdir {model_dir}")

# %% [markdown]
# ## 4. Train, with a live loss curve
#
# `viz.LiveLossCurve` runs the training in a background thread and redraws the curves
# from the event files every few seconds. Expect the mask loss to fall more slowly than
# the detection losses: it has to learn shapes. To stop early, restart the kernel: the
# latest checkpoint stays usable and training again resumes from it.

# %%
if shared:  # a shared quick model trained with an older recipe is kept aside, not resumed
    tutorial.set_aside_if_other_recipe(model_dir, params)
train_params.claim_model_dir(model_dir, EXPERIMENT)
start = time.perf_counter()
viz.LiveLossCurve(model_dir, interval=15).run(runner.train, params, model_dir, strategy=STRATEGY)
print(f"at step {tutorial.trained_step(model_dir)} after {time.perf_counter() - start:.0f} s")

# %%
scalars = viz.read_scalars(model_dir)
viz.save_figure(viz.plot_loss_curves(scalars), out / "loss_curves.png")
last = {tag: round(points[-1][1], 4) for tag, points in scalars.items() if points}
print("last logged values:", last)

# %% [markdown]
# ## 5. Resume
#
# Checkpoints (`ckpt-<step>`) are written after the first loop (`steps per loop`
# steps), then at the end of the first loop that is at least `checkpoint interval` steps
# past the previous one, and always at the last step; the newest `max_to_keep` (3) stay.
# The list below shows which steps this run kept. Running the training again with the
# same model dir restores the latest one, with the optimizer state and the step count,
# and continues to
# `train steps`. Here training is complete, so the call below restores and returns; to
# train longer raise `STEPS` and run the training cell again. The command line resumes the
# same way (also after a crash): rerun the same `deepmac-nb train` command.

# %%
print("checkpoints:", sorted(p.stem for p in model_dir.glob("ckpt-*.index")))
before = tutorial.trained_step(model_dir)
runner.train(params, model_dir, strategy=STRATEGY)
print(f"step before: {before}, after rerun: {tutorial.trained_step(model_dir)}")
