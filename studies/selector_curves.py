"""Valid triplets per batch over training for each selector run of the accuracy study (the
convergence indicator of triplet training): reads runs/accuracy/*/*/ (config.yml + checkpoints/last.pt), writes
docs/figures/selector_valid_triplets.png. Run after `studies/accuracy.py --table selectors`."""

from __future__ import annotations

from pathlib import Path

import yaml
from matplotlib.figure import Figure

from trytry_reid.engine.checkpoint import load_checkpoint
from trytry_reid.engine.train import History

from common import ROOT

COLORS = {"random_negative": "tab:blue", "hardest": "tab:red", "semihard": "tab:green", "all": "tab:purple"}


def selector_runs() -> dict[tuple[str, bool], Path]:
    """(selector, with CE) -> run folder, for full-recipe runs (center loss on, BNNeck on, ImageNet init)."""
    runs = {}
    for config_path in sorted(ROOT.glob("runs/accuracy/*/*/config.yml")):
        cfg = yaml.safe_load(config_path.read_text())
        full = cfg["loss"]["center"]["weight"] > 0 and cfg["model"]["bnneck"] and cfg["model"]["pretrained"] != "none"
        if full and (config_path.parent / "metrics.json").is_file():  # finished runs only
            key = (cfg["loss"]["triplet"]["selector"], cfg["loss"]["cross_entropy"]["weight"] > 0)
            runs.setdefault(key, config_path.parent)
    return runs


def valid_series(run: Path) -> tuple[list[int], list[float]]:
    history = History()
    history.load_state_dict(load_checkpoint(run / "checkpoints" / "last.pt")["history"])
    data = history.to_dict()
    return data["steps"], data["stats"]["triplet/valid_triplets"]


def main() -> None:
    runs = selector_runs()
    fig = Figure(figsize=(12, 4.5), dpi=110)
    for col, with_ce in enumerate((True, False)):
        ax = fig.add_subplot(1, 2, col + 1)
        for (selector, ce), run in sorted(runs.items()):
            if ce == with_ce:
                steps, values = valid_series(run)
                ax.plot(steps, values, color=COLORS.get(selector, "black"), label=selector, linewidth=1.8)
        ax.set_title(f"triplet {'+ cross-entropy' if with_ce else 'only'}: valid triplets per batch")
        ax.set_xlabel("step")
        ax.set_ylabel("valid triplets (loss > 0)")
        ax.set_yscale("symlog", linthresh=10)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=9)
        else:
            ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    out = ROOT / "docs" / "figures" / "selector_valid_triplets.png"
    fig.savefig(out)
    print(f"wrote {out} from {len(runs)} runs")


if __name__ == "__main__":
    main()
