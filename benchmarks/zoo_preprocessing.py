"""How close an imported model's features on raw crops are to the peer's own pipeline (docs/MODEL_ZOO.md).

    TRYTRY_REID_PEERS=.bench-peers python benchmarks/zoo_preprocessing.py [--crops 32] [--record]

For torchreid's osnet_x0_25 and fast-reid's BoT R50-ibn, built by the peer with random weights (tests/zoo_peers.py,
as the parity tests), imported, then run on raw crops of real sizes: Market-1501 (64x128), VIPeR (48x128) and
Market crops enlarged 3x (192x384, Lanczos: a crop the resize must shrink). Per crop set: the max |difference|
of the normalised input tensors (peer's transform vs ours), of the L2-normalised features (peer's read_image +
transform + model vs load_model + our transform), and of the features had the import ignored the peer's resize
filter (bilinear for fast-reid's bicubic). For fast-reid also its demo/predictor.py path (OpenCV INTER_CUBIC,
not antialiased) against its own test loader. With the trained CPU-recipe checkpoint (when present), the feature
difference a trained network shows for the same 1e-7 rounding difference of the two ways to normalise, and
for a resize filter other than the one it was trained with.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from trytry_reid.data.images import read_image  # noqa: E402
from trytry_reid.jobs.zoo_import import run_import  # noqa: E402
from trytry_reid.serving.inference import load_model  # noqa: E402

import zoo_peers  # noqa: E402
from common import print_and_record, result_header  # noqa: E402

RESULTS = ROOT / "docs" / "results" / "zoo_preprocessing.jsonl"
SHARED = Path(os.environ.get("TRYTRY_REID_SHARED", ROOT.parent / "shared"))
TRAINED = Path("/work/artifacts/recipe-s0/checkpoints/last.pt")


def crop_sets(count: int, folder: Path) -> dict[str, list[Path]]:
    market = sorted((SHARED / "data" / "market1501-devsplit" / "query").glob("*.jpg"))[:count]
    viper = sorted((SHARED / "data" / "viper" / "cam_a").glob("*.bmp"))[:count]
    enlarged = []
    for path in market:
        image = Image.open(path).convert("RGB")
        target = folder / f"{path.stem}_x3.png"
        image.resize((image.width * 3, image.height * 3), Image.LANCZOS).save(target)
        enlarged.append(target)
    return {"market1501 (64x128)": market, "viper (48x128)": viper, "market1501 enlarged 3x (192x384)": enlarged}


def ours(checkpoint: Path, paths: list[Path], interpolation: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(normalised inputs, L2-normalised features) through load_model and its transform."""
    loaded = load_model(checkpoint)
    if interpolation is not None:
        loaded.interpolation = interpolation
    transform = loaded.transform()
    batch = torch.stack([transform(read_image(str(p))) for p in paths])
    with torch.no_grad():
        return batch, loaded.model.embed(batch)


def torchreid_inputs(paths: list[Path]) -> torch.Tensor:
    from torchreid.reid.data.transforms import build_transforms
    from torchreid.reid.utils import read_image as peer_read

    return torch.stack([build_transforms(256, 128)[1](peer_read(str(p))) for p in paths])


def fastreid_inputs(model, cfg, paths: list[Path]) -> torch.Tensor:
    from fastreid.data.data_utils import read_image as peer_read
    from fastreid.data.transforms import build_transforms

    transform = build_transforms(cfg, is_train=False)
    return model.preprocess_image(torch.stack([transform(peer_read(str(p))) for p in paths]))


def fastreid_demo_features(model, cfg, paths: list[Path]) -> torch.Tensor:
    """fast-reid's demo/predictor.py: cv2.imread (BGR), flip to RGB, cv2.resize INTER_CUBIC, 0-255 floats."""
    import cv2

    height, width = cfg.INPUT.SIZE_TEST
    images = [cv2.resize(cv2.imread(str(p))[:, :, ::-1], (width, height), interpolation=cv2.INTER_CUBIC)
              for p in paths]
    batch = torch.as_tensor(np.stack(images).astype("float32").transpose(0, 3, 1, 2))
    with torch.no_grad():
        return F.normalize(model(batch), dim=1)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def measure_peer(peer: str, sets: dict[str, list[Path]], folder: Path) -> list[dict]:
    probe = sets["market1501 (64x128)"]
    if peer == "torchreid":
        model = zoo_peers.torchreid_model("osnet_x0_25")
        zoo_peers.randomize(model, lambda: model(torchreid_inputs(probe)))
        source, arch = zoo_peers.save_torchreid(model, folder), "osnet_x0_25"
    else:
        cfg = zoo_peers.fastreid_cfg("bot", "50x", True)
        model = zoo_peers.fastreid_model(cfg)
        zoo_peers.randomize(model, lambda: zoo_peers.fastreid_features(model, cfg, probe))
        source, arch = zoo_peers.save_fastreid(model, folder), "BoT R50-ibn"
    checkpoint = folder / f"{peer}.pt"
    run_import(peer, source, checkpoint)
    wrong_filter = "bicubic" if peer == "torchreid" else "bilinear"
    rows = []
    for name, paths in sets.items():
        our_inputs, our_features = ours(checkpoint, paths)
        _, wrong = ours(checkpoint, paths, wrong_filter)
        if peer == "torchreid":
            peer_inputs = torchreid_inputs(paths)
            with torch.no_grad():
                peer_features = F.normalize(model.eval()(peer_inputs), dim=1)
        else:
            peer_inputs = fastreid_inputs(model, cfg, paths)
            peer_features = F.normalize(zoo_peers.fastreid_features(model, cfg, paths), dim=1)
        row = {"peer": peer, "arch": arch, "crops": name, "num_crops": len(paths),
               "input_max_abs_diff": max_diff(peer_inputs, our_inputs),
               "feature_max_abs_diff": max_diff(peer_features, our_features),
               f"feature_max_abs_diff_if_resized_{wrong_filter}": max_diff(peer_features, wrong)}
        if peer == "fastreid":
            row["its_demo_cv2_vs_its_test_loader_feature_max_abs_diff"] = \
                max_diff(fastreid_demo_features(model, cfg, paths), peer_features)
        rows.append(row)
    return rows


def measure_trained(sets: dict[str, list[Path]]) -> list[dict]:
    """The recipe's trained MobileNetV2: our inputs against the same pixels normalised in 0-255 units."""
    loaded = load_model(TRAINED)
    mean, std = torch.tensor(loaded.mean).view(1, 3, 1, 1), torch.tensor(loaded.std).view(1, 3, 1, 1)
    rows = []
    for name, paths in sets.items():
        batch, features = ours(TRAINED, paths)
        _, bicubic = ours(TRAINED, paths, "bicubic")
        resized = [loaded.transform().transforms[0](read_image(str(p))) for p in paths]
        pixels = torch.stack([torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1) for img in resized])
        other = (pixels - mean * 255) / (std * 255)
        with torch.no_grad():
            rows.append({"peer": "none (trained CPU recipe, MobileNetV2)", "crops": name, "num_crops": len(paths),
                         "input_max_abs_diff": max_diff(batch, other),
                         "feature_max_abs_diff": max_diff(features, loaded.model.embed(other)),
                         "feature_max_abs_diff_if_resized_bicubic": max_diff(features, bicubic)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=32)
    parser.add_argument("--record", action="store_true", help=f"append the JSON lines to {RESULTS}")
    args = parser.parse_args()
    torch.manual_seed(0)
    before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        sets = crop_sets(args.crops, Path(tmp))
        rows = measure_peer("torchreid", sets, Path(tmp)) + measure_peer("fastreid", sets, Path(tmp))
        if TRAINED.is_file():
            rows += measure_trained(sets)
    settings = {"crops": args.crops, "torch_threads": torch.get_num_threads()}
    for row in rows:
        print_and_record({**result_header(settings, before), **row}, RESULTS, args.record)


if __name__ == "__main__":
    main()
