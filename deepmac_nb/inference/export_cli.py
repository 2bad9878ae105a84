"""``deepmac-nb export``: a training model dir -> SavedModel (official DeepMAC signature)
or builtin-ops TFLite.

Deep-MAC and Deep-MARC model dirs both export to the same SavedModel signature (the
architecture is read from ``params.yaml``), and so do their TFLite box -> mask models.

    deepmac-nb export --model-dir runs/deepmac --out export/saved_model
    deepmac-nb export --model-dir runs/deepmac --out export/deepmac.tflite \\
        --format tflite --max-boxes 16

Both are written atomically; see ``deepmac_nb.inference.export`` for the signatures.
"""

from __future__ import annotations

from pathlib import Path

from deepmac_nb.errors import UserError


def add_arguments(parser) -> None:
    parser.add_argument("--model-dir", required=True, help="params.yaml + ckpt-* of a run")
    parser.add_argument("--out", required=True, help="SavedModel folder or .tflite file")
    parser.add_argument("--format", choices=("saved_model", "tflite"), default="saved_model")
    parser.add_argument(
        "--max-boxes", type=int, default=16, help="TFLite only: fixed boxes per invocation"
    )


def check_args(args) -> None:
    """Refuses a bad invocation with one ``UserError`` line, before TensorFlow is imported."""
    if not (Path(args.model_dir) / "params.yaml").is_file():
        raise UserError(f"{args.model_dir} is not a model dir: no params.yaml in it.")
    if args.max_boxes < 1:
        raise UserError(f"--max-boxes must be at least 1, got {args.max_boxes}")
    if args.format == "tflite" and Path(args.out).is_dir():
        raise UserError(f"--out {args.out} is a folder; a TFLite model is one file (.tflite)")


def run(args) -> int:
    check_args(args)
    from deepmac_nb.deepmarc import predictor as marc

    if marc.is_deepmarc_params(marc.read_params(args.model_dir)):
        name, save_model, save_tflite = "Deep-MARC ", *_deepmarc_exporters(args.model_dir)
    else:
        name, save_model, save_tflite = "", *_deepmac_exporters(args.model_dir)
    if args.format == "tflite":
        out = save_tflite(args.out, args.max_boxes)
        print(
            f"export: wrote {name}{out} ({Path(out).stat().st_size / 1e6:.1f} MB, "
            f"{args.max_boxes} boxes per call, builtin ops only)"
        )
    else:
        from deepmac_nb.inference.export import SIGNATURE

        out = save_model(args.out)
        print(f"export: wrote {name}SavedModel {out} (signature {SIGNATURE})")
    return 0


def _deepmac_exporters(model_dir):
    from deepmac_nb.inference import export

    model = export.load_model_dir(model_dir)
    return (
        lambda out: export.export_saved_model(model, out),
        lambda out, boxes: export.export_tflite(model, out, max_boxes=boxes),
    )


def _deepmarc_exporters(model_dir):
    from deepmac_nb.deepmarc import export as marc_export
    from deepmac_nb.deepmarc.predictor import DeepMARCModel

    model = DeepMARCModel.from_model_dir(model_dir)
    return (
        lambda out: marc_export.export_saved_model(model, out),
        lambda out, boxes: marc_export.export_tflite(model, out, max_boxes=boxes),
    )
