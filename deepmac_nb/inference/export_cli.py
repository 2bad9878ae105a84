"""``deepmac-nb export``: a training model dir -> SavedModel (official DeepMAC signature)
or builtin-ops TFLite.

    deepmac-nb export --model-dir runs/deepmac --out export/saved_model
    deepmac-nb export --model-dir runs/deepmac --out export/deepmac.tflite \\
        --format tflite --max-boxes 16

Both are written atomically; see ``deepmac_nb.inference.export`` for the signatures.
"""

from __future__ import annotations

from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("--model-dir", required=True, help="params.yaml + ckpt-* of a run")
    parser.add_argument("--out", required=True, help="SavedModel folder or .tflite file")
    parser.add_argument("--format", choices=("saved_model", "tflite"), default="saved_model")
    parser.add_argument(
        "--max-boxes", type=int, default=16, help="TFLite only: fixed boxes per invocation"
    )


def run(args) -> int:
    from deepmac_nb.inference import export

    model = export.load_model_dir(args.model_dir)
    if args.format == "tflite":
        out = export.export_tflite(model, args.out, max_boxes=args.max_boxes)
        print(
            f"export: wrote {out} ({Path(out).stat().st_size / 1e6:.1f} MB, "
            f"{args.max_boxes} boxes per call, builtin ops only)"
        )
    else:
        out = export.export_saved_model(model, args.out)
        print(f"export: wrote SavedModel {out} (signature {export.SIGNATURE})")
    return 0
