"""docs/MODEL_ZOO.md's table of importable architectures: what is known about each (the peer, the backbone, the
published accuracy) is written here; sizes and CPU speed come from the newest run of each architecture in
docs/results/zoo_speed.jsonl (benchmarks/zoo_speed.py), the recipe's accuracy from the current peer pair."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from peer_tables import SHOWN, current_runs, maps, pair_sets


@dataclass(frozen=True)
class ZooRow:
    source: str          # the `import --from` name
    arch: str            # the `--arch` name(s)
    published: str       # the peer's published Market-1501 rank-1 / mAP and its footnote
    measured: str = ""   # the architecture's name in zoo_speed.jsonl; its backbone and input come from there
    backbone: str = ""   # only for a row not measured
    input: str = "256x128"


RECIPE = "CPU recipe MobileNetV2 (this project)"   # zoo_speed.jsonl's reference architecture
ROWS = [
    ZooRow("torchreid", "osnet_x1_0", "94.2 / 82.6 [1]", "osnet_x1_0"),
    ZooRow("torchreid", "osnet_x0_75", "93.7 / 81.2 [1]", "osnet_x0_75"),
    ZooRow("torchreid", "osnet_x0_5", "92.5 / 79.8 [1]", "osnet_x0_5"),
    ZooRow("torchreid", "osnet_x0_25", "91.2 / 75.0 [1]", "osnet_x0_25"),
    ZooRow("torchreid", "osnet_ibn_x1_0", "cross-domain [2]", "osnet_ibn_x1_0"),
    ZooRow("torchreid", "osnet_ain_x1_0", "cross-domain [2]", "osnet_ain_x1_0"),
    ZooRow("torchreid", "osnet_ain_x0_75, _x0_5, _x0_25", "not in the zoo", backbone="same"),
    ZooRow("torchreid", "resnet50_ibn_a", "not in the zoo", "resnet50_ibn_a (torchreid)"),
    ZooRow("torchreid", "resnet50, resnet101, resnet50_fc512", "R50 87.9 / 70.4, fc512 90.8 / 75.3 [1]",
           backbone="resnet50, resnet101"),
    ZooRow("fastreid", "BoT(R50)", "94.4 / 86.1 [3]", "BoT R50 (fast-reid)"),
    ZooRow("fastreid", "BoT(R50-ibn)", "94.9 / 87.6 [3]", "BoT R50-ibn (fast-reid)"),
    ZooRow("fastreid", "BoT(R101-ibn)", "95.4 / 88.9 [3]", "BoT R101-ibn (fast-reid)"),
    ZooRow("fastreid", "AGW(R50)", "95.3 / 88.2 [3]", "AGW R50 (fast-reid)"),
    ZooRow("fastreid", "AGW(R50-ibn), AGW(R101-ibn)", "95.1 / 88.7, 95.5 / 89.5 [3]",
           backbone="fastreid_r50_ibn_nl, fastreid_r101_ibn_nl"),
    ZooRow("fastreid", "SBS(R50)", "95.4 / 88.2 [3]", "SBS R50 (fast-reid)"),
    ZooRow("fastreid", "SBS(R50-ibn)", "95.7 / 89.3 [3]", "SBS R50-ibn (fast-reid)"),
    ZooRow("fastreid", "SBS(R101-ibn)", "96.3 / 90.3 [3]", "SBS R101-ibn (fast-reid)"),
]
HEAD = ["| `--from` | architecture (`--arch`) | backbone | input | params (M) | GMACs | published Market R1 / mAP | "
        "PyTorch crops/s | ONNX crops/s | vs recipe |",
        "| --- | --- | --- | --- | ---: | ---: | --- | ---: | ---: | ---: |"]


def newest_runs(entries: list[dict]) -> dict[str, dict]:
    """The newest recorded line of each architecture."""
    return {e["architecture"]: e for e in sorted(entries, key=lambda e: e["date"])}


def measured_cells(found: dict | None, arch: str, reference: bool = False) -> list[str]:
    """backbone, input, params, GMACs, PyTorch and ONNX crops/s, and the PyTorch speed relative to the recipe
    (1 for the recipe itself), from the architecture's recorded run."""
    if found is None:
        raise SystemExit(f"zoo_table: docs/results/zoo_speed.jsonl has no run of '{arch}' "
                         "(python benchmarks/zoo_speed.py --record)")
    height, width = found["input"]
    return [found["model"]["backbone"], f"{height}x{width}", f"{found['params_millions']:.2f}",
            f"{found['gmacs']:.2f}", f"{found['torch_crops_per_s']:.1f}", f"{found['onnx_crops_per_s']:.1f}",
            "1" if reference else f"{found['torch_vs_reference']:.3f}"]


def table_line(cells: list[str]) -> str:
    return ("| " + " | ".join(cells) + " |").replace("  ", " ")


def recipe_accuracy(peers: list[dict], pair: str) -> str:
    """'devsplit R1 / mAP, <VIPeR set> mAP' of our same-epoch runs in ``pair`` (means over seeds)."""
    ours, _ = current_runs(peers, pair)
    sets = [name for name in pair_sets(ours) if name != "market1501-devsplit"]

    def mean(name: str, key: str) -> float:
        return statistics.mean(maps(ours, name, key))

    dev = f"devsplit {mean('market1501-devsplit', 'rank1'):.1f} / {mean('market1501-devsplit', 'mAP'):.1f}"
    return ", ".join([dev] + [f"{SHOWN.get(n, n)} mAP {mean(n, 'mAP'):.1f}" for n in sets]) + " [4]"


def zoo_table(speed: list[dict], peers: list[dict], pair: str) -> str:
    """The table's markdown: ROWS with their newest measurements, then the recipe's row."""
    runs = newest_runs(speed)
    lines = list(HEAD)
    for row in ROWS:
        measured = measured_cells(runs.get(row.measured), row.measured) if row.measured else \
            [row.backbone, row.input] + [""] * 5
        lines.append(table_line([row.source, row.arch, *measured[:4], row.published, *measured[4:]]))
    measured = measured_cells(runs.get(RECIPE), RECIPE, reference=True)
    lines.append(table_line(["this project", "CPU recipe (config/mobilenet_market_cpu.yml)", *measured[:4],
                             recipe_accuracy(peers, pair), *measured[4:]]))
    return "\n".join(lines) + "\n\n" + measured_on(runs) + "\n"


def measured_on(runs: dict[str, dict]) -> str:
    """Where and when the speeds shown were measured (each architecture's newest run)."""
    shown = [runs[row.measured] for row in ROWS if row.measured] + [runs[RECIPE]]
    days = sorted({e["date"][:10] for e in shown})
    flags = sorted({" ".join(e["config"]["cpu_flags"]) for e in shown})
    threads = sorted({e["config"]["torch_threads"] for e in shown})
    loads = [x for e in shown for x in (e["load_average_before"][0], e["load_average_after"][0])]
    return (f"Speeds measured {', '.join(days)} on {shown[0]['config']['cpu_count']} cores "
            f"({'; '.join(flags)}), {', '.join(map(str, threads))} thread(s) per runtime, batch "
            f"{shown[0]['config']['batch']}, load average {min(loads):.1f}-{max(loads):.1f}.")
