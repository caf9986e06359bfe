"""The comparison with torchreid as RESULTS.md and the README show it: every recorded pair's table, and for the
current pair a verdict per test set computed from its seeds (a gain whose seed ranges overlap is a tie), its
speed ratio per seed and its equal-wall-time run, and the README's headline table."""

from __future__ import annotations

import statistics

OURS, PEER = "trytry-reid", "torchreid 0.2.5"
PAIR_SETS = ("market1501-devsplit", "viper", "viper_test")  # the order a pair's test sets are shown in
SHOWN = {"market1501-devsplit": "devsplit", "viper": "VIPeR", "viper_test": "VIPeR test half"}
SAME_EPOCHS = "same epochs"


def spread(values: list[float]) -> str:
    """Mean, and the range when there is more than one value: '63.2 (62.5-63.9)'."""
    text = f"{100 * statistics.mean(values):.1f}"
    return text if len(values) == 1 else f"{text} ({100 * min(values):.1f}-{100 * max(values):.1f})"


def pair_sets(entries: list[dict], order: tuple[str, ...] = PAIR_SETS) -> list[str]:
    """The test sets the entries were ranked on, in ``order``; any others sorted when none is in it."""
    names = {name for e in entries for name in e["metrics"]}
    return [name for name in order if name in names] or sorted(names)


def peer_table(entries: list[dict], shown: dict[str, str] | None = None) -> list[str]:
    """One row per pair, system and label, newest pair first: mean (range) over that row's seeds; a test set
    a row was not ranked on is '-'. ``shown`` renames test sets in the header."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for e in sorted(entries, key=lambda e: e["pair"], reverse=True):
        groups.setdefault((e["pair"], e["system"], e["label"]), []).append(e)
    sets = pair_sets(entries)
    names = [(shown or {}).get(t, t) for t in sets]
    head = "| system | " + " | ".join(f"{t} R1 | {t} mAP" for t in names) + \
        " | epochs | seeds | training img/s | training time (s) | pair |"
    lines = [head, "|" + "---|" * (2 * len(sets) + 6)]
    for (pair, system, label), runs in groups.items():
        cells = []
        for name in sets:
            for key in ("rank1", "mAP"):
                values = [r["metrics"][name][key] for r in runs if name in r["metrics"]]
                cells.append(spread(values) if values else "-")
        speed = statistics.mean(r["images_per_s"] for r in runs)
        train_s = statistics.mean(r["train_s"] for r in runs)
        lines.append(f"| {system}, {label} | " + " | ".join(cells) + f" | {runs[0]['epochs']} | "
                     f"{', '.join(str(r['seed']) for r in runs)} | {speed:.1f} | {train_s:.0f} | {pair} |")
    return lines


def runs_of(entries: list[dict], pair: str, system: str, label: str = SAME_EPOCHS) -> list[dict]:
    return sorted((e for e in entries if e["pair"] == pair and e["system"] == system and e["label"] == label),
                  key=lambda e: e["seed"])


def current_runs(entries: list[dict], pair: str) -> tuple[list[dict], list[dict]]:
    """(ours, torchreid's) same-epoch runs of ``pair``, checked to be comparable: both systems present, the
    same seeds, every run ranked on the same test sets; otherwise an error naming what differs."""
    ours, peer = runs_of(entries, pair, OURS), runs_of(entries, pair, PEER)
    if not ours or not peer:
        raise SystemExit(f"peer_tables: pair {pair} lacks {OURS if not ours else PEER}'s same-epoch runs")
    seeds = [[r["seed"] for r in runs] for runs in (ours, peer)]
    if seeds[0] != seeds[1]:
        raise SystemExit(f"peer_tables: pair {pair} has seeds {seeds[0]} for {OURS} but {seeds[1]} for {PEER}")
    sets = set(ours[0]["metrics"])
    for run in ours + peer:
        if set(run["metrics"]) != sets:
            raise SystemExit(f"peer_tables: pair {pair}, {run['system']} seed {run['seed']} was ranked on "
                             f"{sorted(run['metrics'])}, not {sorted(sets)} like {OURS} seed {ours[0]['seed']}")
    return ours, peer


def maps(runs: list[dict], name: str, key: str = "mAP") -> list[float]:
    """Each run's ``key`` (mAP, rank1) on test set ``name``, in %."""
    return [100 * r["metrics"][name][key] for r in runs]


def verdict(ours: list[float], peer: list[float]) -> str:
    """The gain of the means, called a win only when our lowest seed is above torchreid's highest (as shown, to
    0.1), a loss when our highest is below torchreid's lowest, a tie otherwise; one seed gives no verdict."""
    gain = statistics.mean(ours) - statistics.mean(peer)
    if len(ours) < 2 or len(peer) < 2:
        return f"{gain:+.1f} (one seed: no verdict)"
    ours, peer = [round(v, 1) for v in ours], [round(v, 1) for v in peer]
    if min(ours) > max(peer):
        return f"{gain:+.1f} (our lowest seed {min(ours):.1f} above torchreid's highest {max(peer):.1f}: a win)"
    if max(ours) < min(peer):
        return f"{gain:+.1f} (our highest seed {max(ours):.1f} below torchreid's lowest {min(peer):.1f}: a loss)"
    return f"{gain:+.1f} (the seed ranges overlap, ours {min(ours):.1f}-{max(ours):.1f} against " \
           f"{min(peer):.1f}-{max(peer):.1f}: a tie)"


def speed_sentence(ours: list[dict], peer: list[dict]) -> str:
    ratio = statistics.mean(r["images_per_s"] for r in ours) / statistics.mean(r["images_per_s"] for r in peer)
    by_seed = {r["seed"]: r["images_per_s"] for r in peer}
    per_seed = ", ".join(f"{r['images_per_s'] / by_seed[r['seed']]:.2f}x" for r in ours if r["seed"] in by_seed)
    steps = f"; our epoch is {ours[0]['steps_per_epoch']} steps to torchreid's {peer[0]['steps_per_epoch']}" \
        if "steps_per_epoch" in ours[0] and "steps_per_epoch" in peer[0] else ""
    return f"Training speed: {ratio:.2f}x torchreid's images/s (per seed {per_seed}){steps}."


def equal_wall_sentence(entries: list[dict], pair: str, peer: list[dict]) -> str:
    runs = [e for e in entries if e["pair"] == pair and e["system"] == OURS and e["label"].startswith("equal wall")]
    if not runs:
        return ""
    run = runs[0]
    same_seed = next((p for p in peer if p["seed"] == run["seed"]), None)
    if same_seed is None:
        return ""
    gains = " and ".join(f"{100 * (run['metrics'][n]['mAP'] - same_seed['metrics'][n]['mAP']):+.1f} {SHOWN.get(n, n)}"
                         for n in pair_sets([run]) if n in same_seed["metrics"])
    if not gains:
        return ""
    return (f" In torchreid's training time (seed {run['seed']}) ours fits {run['epochs']} epochs, which give "
            f"{gains} mAP over torchreid's {same_seed['epochs']}.")


def peers_section(entries: list[dict], pair: str) -> str:
    """RESULTS.md's comparison: the pair's table, a verdict per test set, speed and the equal-wall run."""
    current = [e for e in entries if e["pair"] == pair]
    ours, peer = current_runs(entries, pair)
    table = "\n".join(peer_table(current, SHOWN))
    verdicts = "; ".join(f"{SHOWN.get(n, n)} mAP {verdict(maps(ours, n), maps(peer, n))}" for n in pair_sets(ours))
    seeds = ", ".join(str(r["seed"]) for r in ours)
    return (f"{table}\n\nOver seeds {seeds}: {verdicts}. {speed_sentence(ours, peer)}"
            f"{equal_wall_sentence(entries, pair, peer)} Earlier pairs (earlier recipes) stay in "
            f"`docs/results/peers.jsonl`.\n")


def readme_table(entries: list[dict], pair: str) -> str:
    """The README's headline: mAP mean (range) per test set and training images/s, the higher mean in bold."""
    ours, peer = current_runs(entries, pair)
    sets = pair_sets(ours)
    head = "| | " + " | ".join(f"{SHOWN.get(n, n)} mAP" for n in sets) + " | training images/s |"
    rows = {OURS: ["trytry-reid, `mobilenet_market_cpu.yml`"], PEER: ["torchreid 0.2.5, its plain baseline"]}
    for name in sets:
        better = OURS if statistics.mean(maps(ours, name)) > statistics.mean(maps(peer, name)) else PEER
        for system, runs in ((OURS, ours), (PEER, peer)):
            text = spread([v / 100 for v in maps(runs, name)])
            mean, _, rest = text.partition(" ")
            rows[system].append(f"**{mean}** {rest}".strip() if system == better else text)
    for system, runs in ((OURS, ours), (PEER, peer)):
        rows[system].append(f"{statistics.mean(r['images_per_s'] for r in runs):.1f}")
    lines = [head, "|" + "---|" * (len(sets) + 2)] + ["| " + " | ".join(cells) + " |" for cells in rows.values()]
    calls = "; ".join(f"{SHOWN.get(n, n)}: {verdict(maps(ours, n), maps(peer, n))}" for n in sets)
    seeds = ", ".join(str(r["seed"]) for r in ours)
    return "\n".join(lines) + f"\n\nmAP over seeds {seeds}, pair {pair}. {calls}.\n"
