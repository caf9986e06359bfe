"""The user documentation stays true: every relative link resolves, CONFIG.md names every config key, the README
stays short, and the README's command for training on one's own folder trains as written."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
from PIL import Image

from trytry_reid.jobs.config import Config

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")), REPO / "benchmarks" / "README.md",
         REPO / "studies" / "README.md"]
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|<img\s[^>]*src=\"([^\"]+)\"")
README_LIMIT = 8 * 1024


def heading_anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces as '-', repeats '-1'..."""
    anchors: set[str] = set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", match.group(1))
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in anchors:
            n += 1
            candidate = f"{slug}-{n}"
        anchors.add(candidate)
    return anchors


def broken_links(page: Path) -> list[str]:
    problems = []
    for match in LINK.finditer(FENCE.sub("", page.read_text())):
        target = match.group(1) or match.group(2)
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
            continue
        path_text, _, anchor = target.partition("#")
        path = (page.parent / path_text).resolve() if path_text else page
        if REPO not in path.parents and path != REPO:
            problems.append(f"{target}: outside the repository")
        elif not path.exists():
            problems.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in heading_anchors(path):
            problems.append(f"{target}: no heading '#{anchor}' in {path.relative_to(REPO)}")
    return problems


def test_every_relative_link_in_the_docs_resolves():
    assert all(page.exists() for page in PAGES), [str(p) for p in PAGES if not p.exists()]
    problems = {str(page.relative_to(REPO)): broken_links(page) for page in PAGES}
    assert not any(problems.values()), {page: found for page, found in problems.items() if found}


def test_the_link_check_sees_a_broken_link_and_anchor(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    (tmp_path / "other.md").write_text("# A title, with `code`\n## Twice\n## Twice\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](other.md#a-title-with-code) [ok](other.md#twice-1) [x](missing.md) [y](other.md#nope)\n"
                    "```\n[in code](ignored.md)\n```\n<img src=\"gone.png\"> [web](https://example.org/x)\n")
    assert broken_links(page) == ["missing.md: no such file", "other.md#nope: no heading '#nope' in other.md",
                                  "gone.png: no such file"]


def schema_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every key a config may set, dotted: `data.root`, `loss.triplet.margin`, `test.datasets[].name`."""
    keys = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        hint, key = hints[field.name], prefix + field.name
        inner = typing.get_args(hint)[0] if typing.get_origin(hint) is list else None
        if dataclasses.is_dataclass(hint):
            keys += schema_keys(hint, key + ".")
        elif inner is not None and dataclasses.is_dataclass(inner):
            keys += [key, *schema_keys(inner, key + "[].")]
        else:
            keys.append(key)
    return keys


def test_config_page_names_every_key_of_the_schema():
    page = (REPO / "docs" / "CONFIG.md").read_text()
    keys = schema_keys()
    assert "data.root" in keys and "loss.triplet.margin" in keys and "test.datasets[].label" in keys
    missing = [key for key in keys if f"`{key}`" not in page]
    assert not missing, f"docs/CONFIG.md does not describe these config keys: {missing}"


def test_the_readme_stays_short():
    size = len((REPO / "README.md").read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes; keep it <= {README_LIMIT} and move detail to docs/"


def readme_folder_command() -> list[str]:
    readme = (REPO / "README.md").read_text()
    lines = [line for block in re.findall(r"```bash\n(.*?)```", readme, re.S) for line in block.splitlines()
             if "data.name=folder" in line]
    assert len(lines) == 1, f"expected one command with data.name=folder in README.md, found {lines}"
    return shlex.split(lines[0].split("#")[0])


def write_people(root: Path) -> None:
    """The README's folder layout: four people (two named by number, two by name), two cameras, distractors."""
    rng = np.random.default_rng(0)
    people = {"0001": (200, 40, 40), "0002": (40, 200, 40), "alice": (40, 40, 200), "bob": (200, 200, 40)}
    layout = {"train": [1, 2, 1, 2], "query": [1], "gallery": [2, 2]}
    for split, cameras in layout.items():
        for person, rgb in people.items():
            for i, camera in enumerate(cameras):
                pixels = np.clip(np.array(rgb) + rng.integers(-30, 30, (48, 24, 3)), 0, 255).astype(np.uint8)
                (root / split / person).mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(root / split / person / f"{person}_{i}_c{camera}.jpg")
    for i in range(2):
        (root / "gallery" / "0").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (48, 24, 3), dtype=np.uint8)).save(root / "gallery" / "0" / f"x{i}_c1.jpg")


def test_the_readme_own_folder_command_trains_on_a_folder_of_people(tmp_path):
    """The README's `data.name=folder` command, as written, on a tiny folder in the README's layout; only the
    size of the run is overridden (and random weights instead of the ImageNet download)."""
    readme = (REPO / "README.md").read_text()
    for split in ("train", "query", "gallery"):
        assert f"{split}/<person>/" in readme, f"the README's folder layout no longer shows {split}/<person>/"
    command = readme_folder_command()
    assert command[:2] == ["trytry-reid", "train"], command
    people, run = tmp_path / "my_people", tmp_path / "run"
    write_people(people)
    args = [f"data.root={people}" if a.startswith("data.root=") else f"output_dir={run}"
            if a.startswith("output_dir=") else a for a in command[2:]]
    assert f"data.root={people}" in args and f"output_dir={run}" in args, command
    tiny = ["data.height=32", "data.width=16", "data.batch_p=2", "data.batch_k=2", "data.workers=0",
            "train.epochs=1", "train.steps_per_epoch=2", "train.milestones=[1]", "train.average_epochs=0",
            "train.eval_every=1", "model.pretrained=none", "test.batch_size=8", "test.figures=false"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, str(REPO / "main.py"), "train", *args, *tiny], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert list(metrics["datasets"]) == ["folder"] and 0.0 <= metrics["datasets"]["folder"]["mAP"] <= 1.0
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "config.yml").is_file()
