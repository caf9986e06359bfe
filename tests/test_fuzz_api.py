"""Property test (Hypothesis) over the HTTP API's search form: any mix of the fields ``image`` (random bytes,
real images of any mode and size, nothing), ``gallery_id``, ``k`` and ``threshold`` (any text) gets a 2xx or
a 4xx with a one-line reason; never a 500 (the test client re-raises server errors), never a traceback; a
200 is a ranking (distances ascending, finite, ``within`` consistent with the threshold)."""

from __future__ import annotations

import math

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402
from test_fuzz_images import FUZZ, encoded, picture  # noqa: E402

from test_export import write_images, write_tiny_checkpoint  # noqa: E402


def field(valid: list[str]) -> st.SearchStrategy:
    """A form field: absent or valid half of the time (so whole requests succeed), else odd values and any text."""
    odd = ["", " ", "nan", "inf", "-1", "-0", "1e-3", "0x1", "²", "1" * 30, "null", "[]", "3", "0", "101", "2.5"]
    return st.one_of(st.none(), st.sampled_from(valid), st.sampled_from(odd), st.text(max_size=12))


K = field(["1", "5", "100", "07"])
THRESHOLD = field(["auto", "none", "0.5", "2", "0", "AUTO"])
GALLERY_ID = field(["0", "5", "6", "9" * 18])


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from trytry_reid.engine.checkpoint import load_checkpoint, save_checkpoint
    from trytry_reid.serving.app import create_app
    from trytry_reid.serving.index import index_folder
    from trytry_reid.serving.inference import load_model

    root = tmp_path_factory.mktemp("fuzz-api")
    checkpoint = write_tiny_checkpoint(root / "small.pt", backbone="small_cnn")
    state = load_checkpoint(checkpoint)
    state["calibration"] = {"metric": "cosine", "target_fpr": 0.1, "threshold": 0.3, "fpr": 0.1, "tpr": 0.8}
    save_checkpoint(state, checkpoint, keep=0)
    loaded = load_model(checkpoint)
    index_folder(loaded, write_images(root / "gallery", 6)[0].parent, root / "index", checkpoint=checkpoint,
                 progress=False)
    return TestClient(create_app(root / "index", loaded, max_upload_bytes=20_000))


UPLOAD = st.one_of(st.none(), st.binary(max_size=64), picture().map(lambda spec: encoded(spec)[0]),
                   picture().map(lambda spec: encoded(spec)[0]))


@FUZZ
@given(image=UPLOAD, gallery_id=GALLERY_ID, k=K, threshold=THRESHOLD)
def test_any_form_gets_an_answer_or_a_reason(client, image, gallery_id, k, threshold):
    fields = {name: value for name, value in (("gallery_id", gallery_id), ("k", k), ("threshold", threshold))
              if value is not None}
    files = {"image": ("q.png", image, "application/octet-stream")} if image is not None else None
    response = client.post("/api/search", data=fields, files=files)
    assert response.status_code < 500
    event(f"status {response.status_code}")                 # --hypothesis-show-statistics shows the mix
    body = response.json()
    if response.status_code >= 400:
        detail = body["detail"]
        text = detail if isinstance(detail, str) else str(detail)
        assert text and "Traceback" not in text
        return
    distances = [item["distance"] for item in body["results"]]
    assert distances == sorted(distances) and all(math.isfinite(d) for d in distances)
    limit = body["threshold"]["threshold"]
    assert all(item["within"] == (limit is not None and item["distance"] <= limit) or limit is None
               for item in body["results"])
