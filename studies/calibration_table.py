"""The calibration table of docs/RESULTS.md for one checkpoint, in one command:

    python studies/calibration_table.py --checkpoint runs/best/checkpoints/best.pt --row "MobileNetV2, ..."

1. `calibrate` on the devsplit (in domain) and VIPeR (cross-domain): AUC, EER, TPR at FPR 1e-2/1e-3/1e-4 and
   their thresholds, from every query-gallery pair of each set (Market protocol);
2. the devsplit threshold (at ``--fpr``, default 1e-3) applied to VIPeR: the FPR / TPR it really gets there;
3. open-set search on the devsplit with half of the gallery identities dropped (seeded): DIR at FAR 1e-2 / 1e-3,
   and the FAR / DIR the pair threshold gets on that search;
4. parity of the three back-ends (``extract``, ``Embedder.from_checkpoint``, ``Embedder.from_onnx``) on
   ``--parity-images`` devsplit query crops (max |difference| of the features);

then appends one JSON line to ``--out`` (default docs/results/calibration.jsonl; ``python
studies/results_table.py`` renders it). calibration.json / calibration.png go to ``--figures``. The
checkpoint is not modified unless ``--store`` (then the devsplit operating point is stored, as `calibrate` does).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from trytry_reid.engine.checkpoint import load_checkpoint
from trytry_reid.jobs.calibrate import run_calibrate
from trytry_reid.jobs.config import load_config

from common import IN_DOMAIN, RESULTS, add_shared_argument, shared_paths


def config_for(shared: Path, fpr: float, workers: int):
    paths = shared_paths(shared)
    devsplit, viper = paths["devsplit"], paths["viper"]
    return load_config(None, [f"data.root={devsplit}", "data.name=market1501", f"data.workers={workers}",
                              f"test.calibration_fpr={fpr}", "test.metric=cosine",
                              f"test.datasets=[{{name: market1501, root: {devsplit}, label: {IN_DOMAIN}}}, "
                              f"{{name: viper, root: {viper}}}]"])


def summarize(payload: dict, fpr: float) -> dict:
    """The table's numbers from calibration.json's content."""
    out = {}
    for label, d in payload["datasets"].items():
        own = d["chosen"]
        out[label] = {"auc": d["auc"], "eer": d["eer"], "eer_threshold": d["eer_threshold"],
                      "tpr_at_fpr": {f"{p['target_fpr']:g}": p["tpr"] for p in d["operating_points"]},
                      "threshold_at_fpr": {f"{p['target_fpr']:g}": p["threshold"] for p in d["operating_points"]},
                      "own_threshold": own["threshold"], "own_tpr": own["tpr"],
                      "num_positive": d["num_positive"], "num_negative": d["num_negative"],
                      "rank1": d["retrieval"]["rank1"], "mAP": d["retrieval"]["mAP"]}
        out[label]["devsplit_threshold_here"] = d["stored_threshold_here"]
        if "open_set" in d:
            out[label]["open_set"] = d["open_set"]
    return {"target_fpr": fpr, "threshold": payload["operating_point"]["threshold"], "datasets": out}


def parity(checkpoint: Path, shared: Path, count: int) -> dict:
    """Max |feature difference| of the checkpoint and ONNX Embedders against `extract` on real crops."""
    import numpy as np

    from trytry_reid.serving.embedder import Embedder
    from trytry_reid.serving.export import export_onnx
    from trytry_reid.serving.folder_images import extract_folder
    from trytry_reid.serving.inference import load_model

    crops = sorted((shared_paths(shared)["devsplit"] / "query").glob("*.jpg"))[:count]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "crops"
        folder.mkdir()
        for path in crops:
            (folder / path.name).symlink_to(path)
        loaded = load_model(checkpoint)
        extracted = extract_folder(loaded, folder, progress=False).features
        onnx_path = export_onnx(loaded, Path(tmp) / "model.onnx")
        from_checkpoint = Embedder.from_checkpoint(checkpoint).embed(crops)
        from_onnx = Embedder.from_onnx(onnx_path).embed(crops)
    return {"images": len(crops), "checkpoint_vs_extract": float(np.abs(from_checkpoint - extracted).max()),
            "onnx_vs_extract": float(np.abs(from_onnx - extracted).max()),
            "onnx_vs_checkpoint": float(np.abs(from_onnx - from_checkpoint).max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--row", help="the table's row label (default: the checkpoint path)")
    parser.add_argument("--fpr", type=float, default=1e-3, help="the operating point calibrated on the devsplit")
    parser.add_argument("--open-set-drop", type=float, default=0.5)
    parser.add_argument("--parity-images", type=int, default=64)
    add_shared_argument(parser)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "calibration.jsonl")
    parser.add_argument("--figures", type=Path, help="calibration.json/png folder (default: next to the checkpoint)")
    parser.add_argument("--store", action="store_true", help="store the devsplit operating point in the checkpoint")
    args = parser.parse_args()
    start = time.time()
    config = config_for(args.shared, args.fpr, args.workers)
    payload = run_calibrate(config, args.checkpoint, args.figures, store=args.store, open_set_drop=args.open_set_drop)
    state = load_checkpoint(args.checkpoint)
    entry = {"row": args.row or str(args.checkpoint), "checkpoint": str(args.checkpoint.resolve()),
             "backbone": state["config"]["model"]["backbone"], "step": state.get("step"),
             **summarize(payload, args.fpr),
             "parity": parity(args.checkpoint, args.shared, args.parity_images) if args.parity_images else None,
             "wall_s": round(time.time() - start, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as handle:
        handle.write(json.dumps(entry) + "\n")
    print(json.dumps({k: entry[k] for k in ("row", "threshold", "parity", "wall_s")}, indent=1))
    print(f"appended to {args.out}")


if __name__ == "__main__":
    main()
