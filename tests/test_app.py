"""HTTP API of the search page: results, image serving, the evaluation view and every error path."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from trytry_reid.serving.app import create_app  # noqa: E402
from trytry_reid.serving.eval_run import load_eval_run, shown_row_ap  # noqa: E402
from trytry_reid.serving.index import GalleryIndex  # noqa: E402
from trytry_reid.serving.inference import load_model  # noqa: E402

from test_export import write_images, write_tiny_checkpoint  # noqa: E402

MAX_UPLOAD = 40_000


def embed_paths(loaded, paths: list[Path]) -> np.ndarray:
    transform = loaded.transform()
    with torch.inference_mode():
        return loaded.model.embed(torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])).numpy()


def write_eval_run(path: Path, images: list[Path]) -> Path:
    """Sidecar-format rows (as visualization/ranking.py writes them), one without 'ap'."""
    def ranked(names, matches):
        return [{"rank": r, "gallery_path": n.name, "distance": 0.1 * r, "is_match": m}
                for r, (n, m) in enumerate(zip(names, matches), start=1)]
    rows = [{"query_path": images[0].name, "query_pid": 0, "ap": 0.9, "ranked": ranked(images[1:4], [1, 0, 1])},
            {"query_path": images[4].name, "query_pid": 2, "ap": 0.2, "ranked": ranked(images[5:8], [0, 0, 1])},
            {"query_path": images[8].name, "query_pid": 4, "ranked": ranked(images[9:11], [0, 1])}]
    path.write_text(json.dumps({"figure": "ranking.png", "title": None, "rows": rows}))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("app")
    loaded = load_model(write_tiny_checkpoint(root / "tiny.pt"))
    images = write_images(root / "gallery", 12, seed=3)
    index = GalleryIndex(32)
    index.add(embed_paths(loaded, images), [str(p) for p in images])
    index.save(root / "index")
    eval_file = write_eval_run(root / "gallery" / "ranking.json", images)
    client = TestClient(create_app(root / "index", loaded, max_upload_bytes=MAX_UPLOAD, eval_run=eval_file))
    return client, images, root, loaded


def upload(client, data: bytes, k: str | None = None, name: str = "q.jpg", threshold: str | None = None):
    fields = {key: value for key, value in (("k", k), ("threshold", threshold)) if value is not None}
    return client.post("/api/search", files={"image": (name, data, "image/jpeg")}, data=fields)


def test_health_and_the_page_use_only_local_assets(setup):
    client = setup[0]
    assert client.get("/api/health").json()["gallery_size"] == 12
    for page in ("/", "/eval"):
        html = client.get(page).text
        assert "http://" not in html and "https://" not in html and "//cdn" not in html
        for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
            assert client.get(asset).status_code == 200, asset


def test_a_gallery_image_finds_itself_first(setup):
    client, images, _, _ = setup
    response = upload(client, images[5].read_bytes(), k="4")
    assert response.status_code == 200
    assert response.json()["threshold"]["threshold"] is None and response.json()["unknown"] is None
    results = response.json()["results"]
    assert len(results) == 4 and all(r["within"] is None for r in results)
    assert results[0]["id"] == 5 and results[0]["path"] == images[5].name
    assert results[0]["distance"] == pytest.approx(0.0, abs=1e-5)
    distances = [r["distance"] for r in results]
    assert distances == sorted(distances)
    assert client.get(results[1]["url"]).content == images[results[1]["id"]].read_bytes()


def test_search_by_gallery_id_ranks_like_the_index(setup):
    client, _, root, _ = setup
    index = GalleryIndex.load(root / "index")
    expected_d, expected_ids = index.search(index.features[7:8], 5)
    results = client.post("/api/search", data={"gallery_id": "7", "k": "5"}).json()["results"]
    assert [r["id"] for r in results] == expected_ids[0].tolist()
    np.testing.assert_allclose([r["distance"] for r in results], expected_d[0], atol=1e-6)


def test_default_k_is_ten(setup):
    client, images, _, _ = setup
    assert len(upload(client, images[0].read_bytes()).json()["results"]) == 10


@pytest.mark.parametrize("k", ["0", "-3", "101", "ten", "2.5"])
def test_bad_k_is_rejected(setup, k):
    client, images, _, _ = setup
    response = upload(client, images[0].read_bytes(), k=k)
    assert response.status_code == 422 and "k must be an integer in [1, 100]" in response.json()["detail"]


def test_non_image_empty_and_missing_uploads(setup):
    client = setup[0]
    response = upload(client, b"%PDF-1.4 definitely not a picture", name="q.png")
    assert response.status_code == 415 and "not a readable image" in response.json()["detail"]
    assert upload(client, b"").status_code == 400
    truncated = io.BytesIO()
    Image.new("RGB", (64, 128), (200, 10, 10)).save(truncated, "PNG")
    assert upload(client, truncated.getvalue()[:60]).status_code == 415
    response = client.post("/api/search", data={"k": "3"})
    assert response.status_code == 422 and "'image'" in response.json()["detail"]


def test_oversized_uploads_are_refused(setup):
    client = setup[0]
    just_over = upload(client, b"\xff" * (MAX_UPLOAD + 10))          # caught while reading the file
    assert just_over.status_code == 413 and f"{MAX_UPLOAD} byte limit" in just_over.json()["detail"]
    far_over = upload(client, b"\xff" * (MAX_UPLOAD * 4))             # caught from Content-Length
    assert far_over.status_code == 413
    bomb = io.BytesIO()
    Image.new("1", (6000, 5000)).save(bomb, "PNG")                      # tiny file, 30 M pixels
    assert len(bomb.getvalue()) < MAX_UPLOAD
    response = upload(client, bomb.getvalue())
    assert response.status_code == 413 and "6000x5000" in response.json()["detail"]


@pytest.mark.parametrize("item", ["12", "999999", "-1", "1.5", "abc", "..%2F..%2Findex%2Findex.json",
                                  "%2Fetc%2Fpasswd"])
def test_unknown_ids_and_path_traversal_get_404(setup, item):
    client = setup[0]
    response = client.get(f"/gallery/{item}")
    assert response.status_code == 404
    assert client.post("/api/search", data={"gallery_id": item}).status_code == 404


def test_static_files_cannot_escape_their_folder(setup):
    client = setup[0]
    for url in ("/static/..%2Fapp.py", "/static/../app.py", "/static/%2e%2e/index.py"):
        response = client.get(url)
        assert response.status_code == 404 and b"GalleryIndex" not in response.content


def test_a_gallery_file_removed_from_disk_is_a_404(setup, tmp_path):
    client, images, root, loaded = setup
    gone = write_images(tmp_path / "gone", 2, seed=9)
    index = GalleryIndex(32)
    index.add(embed_paths(loaded, gone), [str(p) for p in gone])
    index.save(tmp_path / "index")
    gone[1].unlink()
    other = TestClient(create_app(tmp_path / "index", loaded))
    assert other.get("/gallery/0").status_code == 200
    response = other.get("/gallery/1")
    assert response.status_code == 404 and "missing on disk" in response.json()["detail"]
    assert other.get("/api/eval").status_code == 404                   # no evaluation run given


def test_eval_rows_sorted_by_ap_with_images(setup):
    client, images, _, _ = setup
    ascending = client.get("/api/eval").json()
    assert [r["row"] for r in ascending] == [1, 2, 0]                  # AP 0.2, shown-row AP 0.5, 0.9
    assert ascending[1]["ap"] == pytest.approx(0.5) and ascending[1]["ap_source"] == "shown_row"
    assert [i["match"] for i in ascending[0]["items"]] == [False, False, True]
    descending = client.get("/api/eval", params={"order": "descending"}).json()
    assert [r["row"] for r in descending] == [0, 2, 1]
    assert client.get("/eval/image/1/0").content == images[4].read_bytes()
    assert client.get("/eval/image/1/3").content == images[7].read_bytes()
    for url in ("/eval/image/3/0", "/eval/image/1/4", "/eval/image/x/0"):
        assert client.get(url).status_code == 404, url
    assert client.get("/api/eval", params={"order": "sideways"}).status_code == 422


def test_shown_row_ap_by_hand():
    assert shown_row_ap((True, False, True)) == pytest.approx((1 + 2 / 3) / 2)
    assert shown_row_ap((False, True)) == pytest.approx(0.5)
    assert shown_row_ap((False, False)) == 0.0


def test_bad_eval_run_files_name_the_problem(tmp_path):
    path = tmp_path / "run.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_eval_run(path)
    path.write_text(json.dumps({"rows": [{"query_path": "a.jpg", "ranked": [{"gallery_path": "b.jpg"}]}]}))
    with pytest.raises(ValueError, match="row 0: each 'ranked' item needs"):
        load_eval_run(path)
    path.write_text(json.dumps({"rows": [{"ranked": []}]}))
    with pytest.raises(ValueError, match="'query_path'"):
        load_eval_run(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_eval_run(tmp_path / "absent.json")


def test_serve_needs_a_checkpoint_when_the_index_records_none(setup):
    from trytry_reid.serving.app import serve

    root = setup[2]
    with pytest.raises(ValueError, match="records no checkpoint; pass one explicitly"):
        serve(root / "index")


def test_an_explicit_threshold_flags_results_and_says_unknown(setup):
    client, images, _, _ = setup
    ranked = upload(client, images[5].read_bytes(), k="12").json()["results"]
    middle = (ranked[3]["distance"] + ranked[4]["distance"]) / 2
    answer = upload(client, images[5].read_bytes(), k="12", threshold=f"{middle:.6f}").json()
    assert answer["threshold"] == {"threshold": pytest.approx(middle, abs=1e-6), "source": "explicit",
                                   "fpr": None, "tpr": None, "dataset": None}
    assert [r["within"] for r in answer["results"]] == [True] * 4 + [False] * 8 and answer["unknown"] is False
    other = write_images(setup[2] / "elsewhere", 1, seed=77)[0]           # a crop not in the gallery
    nearest = upload(client, other.read_bytes(), k="3").json()["results"][0]["distance"]
    lost = upload(client, other.read_bytes(), k="3", threshold=str(nearest / 2)).json()
    assert lost["unknown"] is True and not any(r["within"] for r in lost["results"])
    assert len(lost["results"]) == 3                                        # still ranked, all flagged beyond
    none = upload(client, other.read_bytes(), threshold="none").json()
    assert none["unknown"] is None and none["threshold"]["source"] == "none"


@pytest.mark.parametrize("threshold", ["-0.1", "2.5", "close", "nan"])
def test_a_bad_threshold_is_rejected(setup, threshold):
    client, images, _, _ = setup
    response = upload(client, images[0].read_bytes(), threshold=threshold)
    assert response.status_code == 422 and "threshold must be 'auto', 'none' or a cosine distance in [0, 2]" \
        in response.json()["detail"]


def test_a_calibrated_index_searches_with_its_stored_threshold(setup, tmp_path):
    from test_embedder import calibrate_on_images

    from trytry_reid.serving.index import index_folder

    _, images, root, _ = setup
    checkpoint = write_tiny_checkpoint(tmp_path / "calibrated.pt")
    from trytry_reid.jobs.calibrate import store_in_checkpoint

    store_in_checkpoint(checkpoint, calibrate_on_images(checkpoint, images))
    loaded = load_model(checkpoint)
    index_folder(loaded, images[0].parent, tmp_path / "index", checkpoint=checkpoint, progress=False)
    stored = json.loads((tmp_path / "index" / "index.json").read_text())["info"]["calibration"]
    assert stored == loaded.calibration                                  # index copies the operating point
    client = TestClient(create_app(tmp_path / "index", loaded))
    health = client.get("/api/health").json()["threshold"]
    assert health["threshold"] == stored["threshold"] and health["source"] == "calibrated"
    answer = upload(client, images[2].read_bytes(), k="12").json()
    assert answer["threshold"]["threshold"] == stored["threshold"] and answer["threshold"]["fpr"] == stored["fpr"]
    assert [r["within"] for r in answer["results"]] == [r["distance"] <= stored["threshold"]
                                                        for r in answer["results"]]
    assert answer["results"][0]["within"] is True and answer["unknown"] is False   # the query itself, distance 0


ODD_IDS = ["%C2%B2", "²", "١", "9" * 5000, "0" * 5000 + "1", "-0", "+1", "0x1", "1e3", " 1", "1%20", "%00",
           "1%0A", "%2e%2e", "%2F", "%F0%9F%98%80", "%FF", "null", "[]", "{}", "1.0", "0_1"]


@pytest.fixture(scope="module")
def fuzz_client(setup):
    client, _, root, loaded = setup
    eval_file = root / "gallery" / "ranking.json"
    return TestClient(create_app(root / "index", loaded, max_upload_bytes=MAX_UPLOAD, eval_run=eval_file),
                      raise_server_exceptions=False)


@pytest.mark.parametrize("odd", ODD_IDS)
def test_odd_ids_and_paths_on_every_route_get_a_4xx_with_a_message(fuzz_client, odd):
    client = fuzz_client
    requests = [("GET", f"/gallery/{odd}", {}), ("GET", f"/eval/image/{odd}/0", {}),
                ("GET", f"/eval/image/0/{odd}", {}), ("GET", f"/static/{odd}", {}),
                ("GET", "/api/eval", {"params": {"order": odd}}),
                ("POST", "/api/search", {"data": {"gallery_id": odd}}),
                ("POST", "/api/search", {"data": {"gallery_id": "1", "k": odd}})]
    for method, url, kwargs in requests:
        response = client.request(method, url, **kwargs)
        assert 400 <= response.status_code < 500, (url, kwargs, response.status_code, response.text[:200])
        if not url.startswith("/static/"):
            assert response.json()["detail"], (url, kwargs)


def test_an_eval_run_serves_only_files_under_its_dataset_roots(tmp_path):
    images = write_images(tmp_path / "data" / "gallery", 6, seed=5)
    run = write_eval_run(tmp_path / "data" / "gallery" / "ranking.json", images + images)
    rows = json.loads(run.read_text())["rows"]
    rows[1]["ranked"][2]["gallery_path"] = "/etc/passwd"
    run.write_text(json.dumps({"rows": rows}))
    with pytest.raises(ValueError, match=r"row 1: '/etc/passwd' is outside the dataset roots"):
        load_eval_run(run)
    rows[1]["ranked"][2]["gallery_path"] = "../../../../../../../../etc/passwd"
    run.write_text(json.dumps({"rows": rows}))
    with pytest.raises(ValueError, match=r"row 1: '/etc/passwd' is outside"):
        load_eval_run(run)
    (tmp_path / "data" / "gallery" / "link.jpg").symlink_to("/etc/passwd")             # a symlink escape
    rows[1]["ranked"][2]["gallery_path"] = "link.jpg"
    run.write_text(json.dumps({"rows": rows}))
    with pytest.raises(ValueError, match=r"row 1: '/etc/passwd' is outside"):
        load_eval_run(run)


def test_an_eval_run_elsewhere_serves_files_under_the_roots_it_records(tmp_path, setup):
    _, _, _, loaded = setup
    images = write_images(tmp_path / "dataset" / "query", 12, seed=6)
    run = tmp_path / "run" / "figures" / "ranking.json"
    run.parent.mkdir(parents=True)
    rows = json.loads(write_eval_run(tmp_path / "scratch.json", images).read_text())["rows"]
    for row in rows:
        row["query_path"] = str(images[0].parent / row["query_path"])
        for item in row["ranked"]:
            item["gallery_path"] = str(images[0].parent / item["gallery_path"])
    run.write_text(json.dumps({"dataset_roots": [str(tmp_path / "dataset")], "rows": rows}))
    index = GalleryIndex(32)
    index.add(embed_paths(loaded, images[:2]), [str(p) for p in images[:2]])
    index.save(tmp_path / "index")
    client = TestClient(create_app(tmp_path / "index", loaded, eval_run=run))
    assert client.get("/eval/image/0/1").content == images[1].read_bytes()
    # a folder on the way swapped for a symlink after start-up: the file now resolves elsewhere
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / images[1].name).write_bytes(b"secret")
    (tmp_path / "dataset").rename(tmp_path / "moved")
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "query").symlink_to(tmp_path / "elsewhere")
    response = client.get("/eval/image/0/1")
    assert response.status_code == 404 and b"secret" not in response.content


def test_search_results_carry_paths_relative_to_the_indexed_folder(tmp_path, setup):
    from trytry_reid.serving.index import index_folder

    _, _, _, loaded = setup
    first = write_images(tmp_path / "crops" / "day1", 3, seed=7)
    write_images(tmp_path / "crops" / "day2" / "cam3", 3, seed=8)
    index_folder(loaded, tmp_path / "crops", tmp_path / "index", progress=False)
    client = TestClient(create_app(tmp_path / "index", loaded))
    response = client.post("/api/search", data={"gallery_id": "0", "k": "6"})
    paths = [r["path"] for r in response.json()["results"]]
    assert str(tmp_path) not in response.text                         # no absolute server path leaks
    assert paths[0] == f"day1/{first[0].name}"
    assert sorted(p.split("/")[0] for p in paths) == ["day1"] * 3 + ["day2"] * 3
    assert all(p.startswith("day1/") or p.startswith("day2/cam3/") for p in paths)
