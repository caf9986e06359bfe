"""The peer toolkits (torchreid 0.2.5, fast-reid 1.4.0) for the import tests: where they are, their own models
and preprocessing, random weights, their own file formats; and, for tests without the peers, files with the
peers' key layouts (tests/zoo_keys.json.gz) and random values. Never a dependency of trytry-reid:
``bash benchmarks/setup_peers.sh`` installs them into <repo>/.bench-peers, or TRYTRY_REID_PEERS names a folder
that holds them."""

from __future__ import annotations

import gzip
import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
PEERS = Path(os.environ.get("TRYTRY_REID_PEERS", REPO / ".bench-peers"))

SMALL = (64, 32)   # exactness does not depend on the size: most parity cases run small
FULL = (256, 128)

TORCHREID_CASES = [  # (model name, torchreid's file form, input size)
    ("osnet_x0_25", "checkpoint", FULL),
    ("osnet_ain_x1_0", "checkpoint", FULL),
    ("osnet_x1_0", "state_dict", SMALL),
    ("osnet_x0_75", "parallel", SMALL),
    ("osnet_x0_5", "checkpoint", SMALL),
    ("osnet_ibn_x1_0", "checkpoint", SMALL),
    ("osnet_ain_x0_75", "state_dict", SMALL),
    ("osnet_ain_x0_5", "checkpoint", SMALL),
    ("osnet_ain_x0_25", "checkpoint", SMALL),
    ("resnet50_ibn_a", "checkpoint", SMALL),
    ("resnet50", "checkpoint", SMALL),
    ("resnet50_fc512", "parallel", SMALL),
    ("resnet101", "state_dict", SMALL),
]

FASTREID_CASES = [  # (id, published config, depth, IBN, extra cfg keys, input size, expected backbone)
    ("bot_R50-ibn", "bot", "50x", True, {}, FULL, "fastreid_r50_ibn"),
    ("bot_R50", "bot", "50x", False, {}, SMALL, "fastreid_r50"),
    ("sbs_R50", "sbs", "50x", False, {}, SMALL, "fastreid_r50_nl"),
    ("sbs_R50-ibn", "sbs", "50x", True, {}, SMALL, "fastreid_r50_ibn_nl"),
    ("agw_R50", "agw", "50x", False, {}, SMALL, "fastreid_r50_nl"),
    ("bot_R101-ibn", "bot", "101x", True, {}, SMALL, "fastreid_r101_ibn"),
    ("sbs_R101-ibn", "sbs", "101x", True, {}, SMALL, "fastreid_r101_ibn_nl"),
    ("bot_R50_embedding256", "bot", "50x", False, {"MODEL.HEADS.EMBEDDING_DIM": 256}, SMALL, "fastreid_r50"),
]

# fast-reid's published configs (configs/Base-bagtricks.yml, Base-AGW.yml, Base-SBS.yml at
# github.com/JDAI-CV/fast-reid), as get_cfg() overrides: the keys that shape the model.
FASTREID_CONFIGS = {
    "bot": {"MODEL.BACKBONE.LAST_STRIDE": 1, "MODEL.BACKBONE.WITH_NL": False, "MODEL.HEADS.WITH_BNNECK": True,
            "MODEL.HEADS.POOL_LAYER": "GlobalAvgPool", "MODEL.HEADS.NECK_FEAT": "before",
            "MODEL.HEADS.CLS_LAYER": "Linear", "INPUT.SIZE_TEST": [256, 128]},
    "agw": {"MODEL.BACKBONE.LAST_STRIDE": 1, "MODEL.BACKBONE.WITH_NL": True, "MODEL.HEADS.WITH_BNNECK": True,
            "MODEL.HEADS.POOL_LAYER": "GeneralizedMeanPooling", "MODEL.HEADS.NECK_FEAT": "before",
            "MODEL.HEADS.CLS_LAYER": "Linear", "INPUT.SIZE_TEST": [256, 128]},
    "sbs": {"MODEL.BACKBONE.LAST_STRIDE": 1, "MODEL.BACKBONE.WITH_NL": True, "MODEL.HEADS.WITH_BNNECK": True,
            "MODEL.HEADS.POOL_LAYER": "GeneralizedMeanPoolingP", "MODEL.HEADS.NECK_FEAT": "after",
            "MODEL.HEADS.CLS_LAYER": "CircleSoftmax", "MODEL.HEADS.SCALE": 64, "MODEL.HEADS.MARGIN": 0.35,
            "INPUT.SIZE_TEST": [384, 128]},
}


def require_peer(name: str):
    """Import ``torchreid`` or ``fastreid`` from the peers folder, or skip the test saying how to install it."""
    if str(PEERS) not in sys.path:
        sys.path.append(str(PEERS))
    try:
        if name == "fastreid":
            return import_fastreid()
        import torchreid

        return torchreid
    except ImportError as error:
        pytest.skip(f"peer toolkit {name} not importable from {PEERS} ({error}); run benchmarks/setup_peers.sh "
                    "or set TRYTRY_REID_PEERS")


def import_fastreid():
    """fast-reid 1.4.0 with its model and test-transform modules. Its ``fastreid.data`` package __init__
    imports modules that torch 2 and Python 3.10 removed (torch._six, collections.Mapping) for its data
    loaders, which these tests do not use: the package is registered empty so that its transforms load."""
    import fastreid

    if "fastreid.data" not in sys.modules:
        package = types.ModuleType("fastreid.data")
        package.__path__ = [str(Path(fastreid.__file__).parent / "data")]
        sys.modules["fastreid.data"] = package
    import fastreid.data.data_utils  # noqa: F401
    import fastreid.data.transforms  # noqa: F401
    import fastreid.modeling  # noqa: F401
    import fastreid.utils.checkpoint  # noqa: F401

    return fastreid


def torchreid_model(name: str, num_classes: int = 11) -> torch.nn.Module:
    torchreid = require_peer("torchreid")
    return torchreid.models.build_model(name, num_classes, loss="softmax", pretrained=False).eval()


def fastreid_cfg(kind: str, depth: str = "50x", ibn: bool = False, height: int | None = None,
                 width: int | None = None, extra: dict | None = None):
    fastreid = require_peer("fastreid")
    cfg = fastreid.config.get_cfg()
    settings = {**FASTREID_CONFIGS[kind], "MODEL.DEVICE": "cpu", "MODEL.BACKBONE.PRETRAIN": False,
                "MODEL.BACKBONE.DEPTH": depth, "MODEL.BACKBONE.WITH_IBN": ibn, "MODEL.HEADS.NUM_CLASSES": 11,
                **(extra or {})}
    if height is not None:
        settings["INPUT.SIZE_TEST"] = [height, width]
    for dotted, value in settings.items():
        node = cfg
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = getattr(node, part)
        setattr(node, leaf, value)
    return cfg


def fastreid_model(cfg) -> torch.nn.Module:
    from fastreid.modeling import build_model

    return build_model(cfg).eval()


# The normalisations that end a residual branch (ResNet bottlenecks, OSNet blocks).
BRANCH_ENDS = ("bn3.weight", "conv3.bn.weight")


def randomize(model: torch.nn.Module, run, seed: int = 0) -> None:
    """Random parameters, and random BatchNorm running statistics around the statistics each BatchNorm sees in
    one eval-mode pass of ``run()`` (mean + N(0, 0.1 std), variance floored at the channels' mean variance,
    x U(0.5, 1.5)), so activations keep a sane scale through deep trunks and non-local blocks.

    Normalisation scales are U(0.5, 1.5), except where a residual branch ends: U(0.1, 0.3), a branch small
    against the identity path as in trained networks. At full scale a random ResNet-50 is chaotic: it turns
    the 1e-7 rounding difference between two exact ways of normalising pixels (fast-reid's in 0-255 units,
    ours in [0, 1]) into 1e-5 feature differences, where a trained network gives 1e-7 (MODEL_ZOO.md)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.dtype.is_floating_point or name.endswith(("running_mean", "running_var")):
                continue
            if tensor.dim() == 1 and name.endswith("weight"):
                low, high = (0.1, 0.3) if name.endswith(BRANCH_ENDS) else (0.5, 1.5)
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)
            elif tensor.dim() <= 1:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1 + (2.0 if name.endswith(".p")
                                                                                     else 0.0))
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * (2.0 / tensor[0].numel()) ** 0.5)

    def set_statistics(module, inputs):
        x = inputs[0]
        dims = [d for d in range(x.dim()) if d != 1]
        module.running_mean.copy_(x.mean(dims) + torch.randn(x.shape[1], generator=generator) * 0.1 * x.std(dims))
        variance = x.var(dims) + x.var(dims).mean()  # floored: a channel nearly constant on a few crops must not
        module.running_var.copy_(variance * (torch.rand(x.shape[1], generator=generator) + 0.5))  # amplify noise
        module.num_batches_tracked.fill_(7)

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    handles = [m.register_forward_pre_hook(set_statistics) for m in norms]
    model.eval()
    try:
        with torch.no_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()


def save_torchreid(model: torch.nn.Module, folder: Path, form: str = "checkpoint") -> Path:
    """``checkpoint``: torchreid's save_checkpoint ({'state_dict', 'epoch', 'rank1' (a NumPy float), 'optimizer'});
    ``state_dict``: torch.save of the state dict; ``parallel``: the state dict of a DataParallel model."""
    torchreid = require_peer("torchreid")
    if form == "state_dict":
        path = folder / "model.pth"
        torch.save(model.state_dict(), path)
        return path
    if form == "parallel":
        path = folder / "model_parallel.pth"
        torch.save(torch.nn.DataParallel(model).state_dict(), path)
        return path
    optimizer = torch.optim.Adam(model.parameters())
    state = {"state_dict": model.state_dict(), "epoch": 60, "rank1": np.float64(0.912),
             "optimizer": optimizer.state_dict()}
    torchreid.utils.save_checkpoint(state, str(folder))
    return folder / "model.pth.tar-60"


def save_fastreid(model: torch.nn.Module, folder: Path, name: str = "model_final") -> Path:
    from fastreid.utils.checkpoint import Checkpointer

    Checkpointer(model, str(folder)).save(name, epoch=59)
    return folder / f"{name}.pth"


def torchreid_features(model, paths, height: int, width: int) -> torch.Tensor:
    """torchreid's eval path: its read_image, its test transform, the model in eval mode."""
    from torchreid.reid.data.transforms import build_transforms
    from torchreid.reid.utils import read_image

    _, transform = build_transforms(height, width)
    batch = torch.stack([transform(read_image(str(p))) for p in paths])
    with torch.no_grad():
        return model.eval()(batch)


def fastreid_features(model, cfg, paths) -> torch.Tensor:
    """fast-reid's eval path: its read_image, its test transform (0-255 tensors), the model's normalisation."""
    from fastreid.data.data_utils import read_image
    from fastreid.data.transforms import build_transforms

    transform = build_transforms(cfg, is_train=False)
    batch = torch.stack([transform(read_image(str(p))) for p in paths])
    with torch.no_grad():
        return model.eval()(batch)


# The peers' key names and shapes (tests/make_zoo_keys.py writes them from the peers): the key tables' test
# data where the peers are not installed.
KEYS = json.loads(gzip.open(REPO / "tests" / "zoo_keys.json.gz", "rt").read())


def fake_weights(layout: list, seed: int = 0, classes: int | None = None) -> dict[str, torch.Tensor]:
    """Random tensors with a peer's key names and shapes: He-scaled weights, normalisation scales near 1 and
    shifts near 0.1, running statistics 0 / 1 (a network whose features still tell colours apart)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout:
        if classes is not None and key in ("classifier.weight", "classifier.bias", "heads.weight"):
            shape = [classes, *shape[1:]]
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(3)
        elif key.endswith(("running_var", ".p")):
            state[key] = torch.ones(shape) * (3.0 if key.endswith(".p") else 1.0)
        elif key.endswith("running_mean"):
            state[key] = torch.zeros(shape)
        elif len(shape) == 1 and key.endswith("weight"):
            state[key] = torch.rand(shape, generator=generator) * 0.5 + 0.75
        elif len(shape) <= 1:
            state[key] = torch.randn(shape, generator=generator) * 0.05 + 0.1
        else:
            fan_in = int(np.prod(shape[1:]))
            state[key] = torch.randn(shape, generator=generator) * (2.0 / fan_in) ** 0.5
    return state


def save_torchreid_file(path: Path, arch: str = "osnet_x0_25", **kwargs) -> Path:
    state = fake_weights(KEYS["torchreid"][arch], **kwargs)
    torch.save({"state_dict": state, "epoch": 60, "rank1": np.float64(0.9)}, path)
    return path


def save_fastreid_file(path: Path, case: str = "bot_R50-ibn") -> Path:
    torch.save({"model": fake_weights(KEYS["fastreid"][case]), "iteration": 100}, path)
    return path
