"""Ranking rows against a brute-force loop, the grid's pixels read back, sidecars, and query choice."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trytry_reid.catalog import UnknownNameError
from trytry_reid.visualization.query_choice import choose_queries
from trytry_reid.visualization.ranking import (
    LETTERBOX,
    MATCH_COLOR,
    QUERY_COLOR,
    WRONG_COLOR,
    GridLayout,
    RankingRow,
    draw_ranking_grid,
    ranking_grid_array,
    ranking_rows,
)

from conftest import MARKET_DEVSPLIT, require


def brute_force_rows(distmat, q_pids, g_pids, q_cams, g_cams, queries, top_k, remove_same_camera):
    """The definition, one gallery item at a time: drop same-id-same-camera, sort by (distance, index)."""
    result = []
    for q in queries:
        kept = [g for g in range(distmat.shape[1])
                if not (remove_same_camera and g_pids[g] == q_pids[q] and g_cams[g] == q_cams[q])]
        kept.sort(key=lambda g: (distmat[q, g], g))
        result.append(kept[:top_k])
    return result


@pytest.mark.parametrize("remove_same_camera", [True, False])
@pytest.mark.parametrize("top_k", [1, 5, 40])
def test_ranking_rows_match_brute_force_with_ties(remove_same_camera, top_k):
    rng = np.random.default_rng(7)
    num_q, num_g = 12, 30
    distmat = rng.integers(0, 4, size=(num_q, num_g)).astype(float)  # few values: many ties
    q_pids, g_pids = rng.integers(1, 5, num_q), rng.integers(0, 5, num_g)
    q_cams, g_cams = rng.integers(0, 2, num_q), rng.integers(0, 2, num_g)
    queries = [3, 0, 11, 7]
    rows = ranking_rows(distmat, q_pids, g_pids, q_cams, g_cams, queries, top_k, remove_same_camera)
    expected = brute_force_rows(distmat, q_pids, g_pids, q_cams, g_cams, queries, top_k, remove_same_camera)
    assert [row.query_index for row in rows] == queries
    for row, want, q in zip(rows, expected, queries):
        assert row.gallery_indices.tolist() == want
        assert row.distances.tolist() == distmat[q, want].tolist()
        assert row.is_match.tolist() == [bool(g_pids[g] == q_pids[q]) for g in want]
        assert row.gallery_pids.tolist() == g_pids[want].tolist()
        assert row.gallery_camids.tolist() == g_cams[want].tolist()
        assert (row.query_pid, row.query_camid) == (q_pids[q], q_cams[q])


def test_ranking_rows_hand_computed_case():
    # gallery 0: same id, same camera (excluded); 1 and 3 tie at 0.2 (index order); 2: wrong id; 4: same id
    distmat = np.array([[0.0, 0.2, 0.1, 0.2, 0.5]])
    rows = ranking_rows(distmat, [7], [7, 3, 9, 7, 7], [0], [0, 1, 1, 2, 1], [0], top_k=3)
    assert rows[0].gallery_indices.tolist() == [2, 1, 3]
    assert rows[0].is_match.tolist() == [False, False, True]
    assert rows[0].distances.tolist() == [0.1, 0.2, 0.2]
    kept_all = ranking_rows(distmat, [7], [7, 3, 9, 7, 7], [0], [0, 1, 1, 2, 1], [0], top_k=3,
                            remove_same_camera=False)
    assert kept_all[0].gallery_indices.tolist() == [0, 2, 1]


def test_ranking_rows_reject_bad_input():
    distmat = np.zeros((2, 3))
    with pytest.raises(ValueError, match="q_pids"):
        ranking_rows(distmat, [1], [1, 2, 3], [0, 0], [0, 0, 0], [0])
    with pytest.raises(ValueError, match=r"out of range for 2 queries"):
        ranking_rows(distmat, [1, 2], [1, 2, 3], [0, 0], [0, 0, 0], [2])
    with pytest.raises(ValueError, match="NaN"):
        ranking_rows(np.full((2, 3), np.nan), [1, 2], [1, 2, 3], [0, 0], [0, 0, 0], [0])
    with pytest.raises(ValueError, match="top_k"):
        ranking_rows(distmat, [1, 2], [1, 2, 3], [0, 0], [0, 0, 0], [0], top_k=0)


def solid_images(folder: Path, colors, size=(64, 128), prefix="img") -> list[str]:
    """One solid-colour PNG per colour (size is PIL's (w, h)); the colour identifies the file in the grid."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, color in enumerate(colors):
        path = folder / f"{prefix}_{i:02d}.png"
        Image.new("RGB", size, tuple(color)).save(path)
        paths.append(str(path))
    return paths


def constructed_case(tmp_path: Path):
    """2 queries x 3 ranks with known matches; each gallery image a distinct solid colour."""
    distmat = np.array([[0.3, 0.1, 0.9, 0.2, 0.5],
                        [0.4, 0.8, 0.05, 0.6, 0.7]])
    q_pids, g_pids = [1, 2], [1, 2, 2, 3, 1]
    rows = ranking_rows(distmat, q_pids, g_pids, [0, 0], [1, 1, 1, 1, 1], [0, 1], top_k=3)
    # query 0 ranks gallery 1 (id 2, wrong), 3 (id 3, wrong), 0 (id 1, match)
    # query 1 ranks gallery 2 (id 2, match), 0 (id 1, wrong), 3 (id 3, wrong)
    assert [r.gallery_indices.tolist() for r in rows] == [[1, 3, 0], [2, 0, 3]]
    g_colors = [(200, 200, 0), (0, 200, 200), (200, 0, 200), (90, 60, 30), (120, 120, 250)]
    gallery = solid_images(tmp_path / "g", g_colors, prefix="gallery")
    queries = solid_images(tmp_path / "q", [(50, 50, 50), (240, 240, 240)], prefix="query")
    return rows, queries, gallery, g_colors


def test_grid_size_borders_and_images_read_back(tmp_path):
    rows, queries, gallery, g_colors = constructed_case(tmp_path)
    out = draw_ranking_grid(rows, queries, gallery, tmp_path / "out" / "rank.png", title="constructed")
    image = np.asarray(Image.open(out).convert("RGB"))
    # default cell 128x64 with a 4 px border -> boxes 136x72; width: margins 2*10, 4 boxes, 3 gaps of 6,
    # the query separator 18; height: margins 2*10, title 26, header 20, 2 rows of (box 136 + labels 34), gap 6
    assert image.shape == (20 + 26 + 20 + 2 * (136 + 34) + 6, 20 + 4 * 72 + 3 * 6 + 18, 3)
    layout = GridLayout(n_rows=2, n_cols=3, cell_h=128, cell_w=64, has_title=True)
    for r, row in enumerate(rows):
        x, y = layout.box_origin(r, 0)
        assert tuple(image[y + 68, x + 1]) == QUERY_COLOR
        for c, (g, match) in enumerate(zip(row.gallery_indices, row.is_match), start=1):
            x, y = layout.box_origin(r, c)
            want = MATCH_COLOR if match else WRONG_COLOR
            for px, py in [(x + 1, y + 68), (x + 36, y + 1), (x + 70, y + 68), (x + 36, y + 134)]:
                assert tuple(image[py, px]) == want, (r, c, px, py)
            assert tuple(image[y + 68, x + 36]) == g_colors[g]  # the right image, in rank order
    assert (image[:, :, 1][image[:, :, 0] == 0] == 160).any()  # some green border really is there
    assert np.array_equal(image, ranking_grid_array(rows, queries, gallery, title="constructed"))


def test_sidecar_json_and_csv_list_every_ranked_file(tmp_path):
    rows, queries, gallery, _ = constructed_case(tmp_path)
    out = draw_ranking_grid(rows, queries, gallery, tmp_path / "rank.png")
    payload = json.loads(out.with_suffix(".json").read_text())
    assert payload["figure"] == "rank.png"
    assert payload["dataset_roots"] == [str(tmp_path.resolve())]     # what `serve --eval-run` may serve
    first = payload["rows"][0]
    assert first["query_path"] == queries[0] and first["query_pid"] == 1
    assert [item["gallery_path"] for item in first["ranked"]] == [gallery[1], gallery[3], gallery[0]]
    assert [item["is_match"] for item in first["ranked"]] == [False, False, True]
    assert [item["distance"] for item in first["ranked"]] == [0.1, 0.2, 0.3]
    with open(out.with_suffix(".csv")) as handle:
        lines = list(csv.DictReader(handle))
    assert len(lines) == 6
    assert lines[3]["query_path"] == queries[1] and lines[3]["gallery_path"] == gallery[2]
    assert (lines[3]["rank"], lines[3]["is_match"], float(lines[3]["distance"])) == ("1", "1", 0.05)


def test_small_images_upscale_with_nearest_and_narrow_ones_letterbox(tmp_path):
    checker = np.kron((np.indices((8, 8)).sum(0) % 2) * 255, np.ones((1, 1))).astype(np.uint8)
    digit = tmp_path / "digit.png"
    Image.fromarray(checker).save(digit)  # 8x8 grey checkerboard
    narrow = solid_images(tmp_path, [(10, 120, 10)], size=(48, 128), prefix="viper")[0]
    row = RankingRow(0, 1, 0, np.array([0]), np.array([0.5]), np.array([True]), np.array([1]), np.array([1]))
    grid = ranking_grid_array([row], [str(digit)], [narrow], cell_size=(64, 64))
    layout = GridLayout(1, 1, 64, 64, False)
    x, y = layout.box_origin(0, 0)
    cell = grid[y + layout.border: y + layout.border + 64, x + layout.border: x + layout.border + 64, 0]
    assert set(np.unique(cell).tolist()) == {0, 255}  # no blended pixels: nearest-neighbour upscaling
    assert np.array_equal(cell[::8, ::8], checker)
    x, y = layout.box_origin(0, 1)
    inner = grid[y + layout.border: y + layout.border + 64, x + layout.border: x + layout.border + 64]
    # 48x128 fitted into 64x64 -> 24x64, centred: letterbox at the sides, the image in the middle
    assert tuple(inner[32, 2]) == LETTERBOX and tuple(inner[32, 32]) == (10, 120, 10)


def test_grid_rejects_unreadable_images_naming_the_file(tmp_path):
    rows, queries, gallery, _ = constructed_case(tmp_path)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png"):
        ranking_grid_array(rows, queries, [str(broken)] * 5)
    with pytest.raises(ValueError, match=r"\.png"):
        draw_ranking_grid(rows, queries, gallery, tmp_path / "rank.jpg")


def test_market_devsplit_grid_when_present(tmp_path):
    root = require(MARKET_DEVSPLIT)
    pattern = re.compile(r"^(-?\d+)_c(\d)")
    def records(folder, count):
        files = sorted((root / folder).glob("*.jpg"))[:count]
        parsed = [pattern.match(f.name) for f in files]
        return [str(f) for f in files], [int(m[1]) for m in parsed], [int(m[2]) - 1 for m in parsed]
    q_paths, q_pids, q_cams = records("query", 4)
    g_paths, g_pids, g_cams = records("bounding_box_test", 60)
    distmat = (np.asarray(q_pids)[:, None] != np.asarray(g_pids)[None, :]) + np.linspace(0, 0.5, 60)[None, :]
    rows = ranking_rows(distmat, q_pids, g_pids, q_cams, g_cams, [0, 1, 2, 3], top_k=5)
    image = np.asarray(Image.open(draw_ranking_grid(rows, q_paths, g_paths, tmp_path / "market.png")))
    layout = GridLayout(4, 5, 128, 64, False)
    assert image.shape == (layout.height, layout.width, 3)
    for r, row in enumerate(rows):
        for c, match in enumerate(row.is_match, start=1):
            x, y = layout.box_origin(r, c)
            assert tuple(image[y + 1, x + 36]) == (MATCH_COLOR if match else WRONG_COLOR)


def test_choose_first_random_and_worst():
    assert choose_queries("first", 3, num_queries=10) == [0, 1, 2]
    assert choose_queries("first", 30, num_queries=4) == [0, 1, 2, 3]
    picked = choose_queries("random", 5, num_queries=100, seed=3)
    assert picked == choose_queries("random", 5, num_queries=100, seed=3)
    assert picked != choose_queries("random", 5, num_queries=100, seed=4)
    assert len(set(picked)) == 5 and all(0 <= i < 100 for i in picked)
    ap = np.array([0.9, np.nan, 0.1, 0.5, 0.1, np.nan])
    assert choose_queries("worst", 3, num_queries=6, all_ap=ap) == [2, 4, 3]
    assert choose_queries("worst", 10, num_queries=6, all_ap=ap) == [2, 4, 3, 0]  # NaN never chosen
    with pytest.raises(ValueError, match="all_ap"):
        choose_queries("worst", 3, num_queries=6)
    with pytest.raises(ValueError, match=r"shape \(6,\)"):
        choose_queries("worst", 3, num_queries=6, all_ap=np.zeros(5))


def test_choose_named_files_and_clear_errors():
    paths = ["/data/query/0001_c1s1_001051_00.jpg", "/data/query/0002_c2s1_000301_00.jpg", "/data/q/x.jpg"]
    names = ["0002_c2s1_000301_00.jpg", "/data/q/x.jpg"]
    assert choose_queries("names", 1, num_queries=3, query_paths=paths, names=names) == [1, 2]
    with pytest.raises(ValueError, match=r"0001_c1s1_001051_00\.jpg") as error:
        choose_queries("names", 1, num_queries=3, query_paths=paths, names=["nope.jpg"])
    assert "nope.jpg" in str(error.value)
    with pytest.raises(UnknownNameError, match="first, names, random, worst"):
        choose_queries("wrost", 1, num_queries=3)
    with pytest.raises(ValueError, match=">= 1"):
        choose_queries("first", 0, num_queries=3)
