"""The server's memory under concurrent uploads of small-byte, huge-dimension images stays bounded and comes back."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from trytry_reid.serving.uploads import UploadGate, decode_upload  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def encoded(size: tuple[int, int], fmt: str, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 200 if mode in ("1", "L") else (200, 30, 90)).save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt,mode", [("PNG", "RGB"), ("JPEG", "RGB"), ("PNG", "1"), ("GIF", "P")])
def test_large_uploads_are_decoded_reduced_to_about_the_fit(fmt, mode):
    image = decode_upload(encoded((4000, 3000), fmt, mode), 10**8, fit=(256, 128))
    assert image.mode == "RGB"
    assert image.width >= 256 and image.height >= 128, image.size                  # never below the fit
    assert image.width < 512 or image.height < 256, image.size                     # not much above it
    assert abs(image.width / image.height - 4 / 3) < 0.02                         # aspect kept
    if mode == "RGB" and fmt == "PNG":
        assert image.getpixel((10, 10)) == (200, 30, 90)


def test_small_uploads_are_decoded_unchanged():
    assert decode_upload(encoded((300, 200), "PNG"), 10**8, fit=(256, 128)).size == (300, 200)
    assert decode_upload(encoded((900, 2000), "PNG"), 10**8).size == (900, 2000)   # no fit: full size


def test_the_gate_lets_only_its_limit_through_at_once():
    import threading
    import time

    gate, inside, most = UploadGate(2), [0], [0]
    lock = threading.Lock()

    def work() -> None:
        with gate.slot():
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.05)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 2


def test_server_rss_stays_bounded_under_a_burst_and_comes_back():
    """A real server process, 10 simultaneous uploads of a 4900x5000 PNG (82 KB each): before bounding the
    decodes, RSS rose by ~1.7 GB and stayed ~140 MB up; bounded, it rises by ~0.2 GB and comes back."""
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "serve_memory.py"), "--uploads", "10",
                           "--settle", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["statuses"] == {"200": 10}
    assert report["peak_rss_mib"] - report["rss_before_mib"] < 600, report
    assert report["rss_after_mib"] - report["rss_before_mib"] < 100, report
