"""Server memory under a burst of concurrent uploads of a small-byte, large-dimension image (one JSON).

    .venv/bin/python benchmarks/serve_memory.py [--uploads 50] [--size 4900x5000] [--settle 3]

Starts ``trytry-reid serve`` (uvicorn, a real HTTP server) in its own process over a small index built
from generated crops with a small CNN checkpoint (256 x 128 input), sends one small warm-up query, then
``--uploads`` simultaneous ``POST /api/search`` uploads of one PNG of ``--size`` pixels (a flat colour: a
few dozen KB on the wire, under the server's pixel cap). The server's memory is read from
``/proc/<pid>/status``: ``rss_before_mib`` (VmRSS after the warm-up), ``peak_rss_mib`` (VmHWM, the
highest RSS the process ever had) and ``rss_after_mib`` (VmRSS ``--settle`` seconds after the burst).
Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

MIB = 1024 * 1024


def proc_kib(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` memory field (VmRSS, VmHWM) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def write_checkpoint(path: Path) -> Path:
    """A small-CNN checkpoint as `train` writes it, with the default 256 x 128 input."""
    from trytry_reid.imagenet import IMAGENET_MEAN, IMAGENET_STD
    from trytry_reid.models import build_reid_model

    config = {"model": {"backbone": "small_cnn", "last_stride": 2, "embedding_dim": 0, "bnneck": True,
                        "pooling": "avg"},
              "data": {"height": 256, "width": 128, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}}
    torch.manual_seed(0)
    model = build_reid_model(num_classes=0, **config["model"])
    torch.save({"model": model.state_dict(), "config": config, "num_classes": 0,
                "epoch": 1, "step": 1, "metrics": {}}, path)
    return path


def build_index(root: Path, checkpoint: Path) -> Path:
    from trytry_reid.serving.index import index_folder
    from trytry_reid.serving.inference import load_model

    rng = np.random.default_rng(0)
    for i in range(16):
        pixels = rng.integers(0, 256, (128, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "crops" / f"{i // 2:04d}_c{i % 3 + 1}s1_{i:06d}_00.jpg", quality=90)
    index_folder(load_model(checkpoint), root / "crops", root / "index", checkpoint=checkpoint, progress=False)
    return root / "index"


def png_bytes(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (120, 60, 200)).save(buffer, "PNG")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(index: Path, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, "-m", "trytry_reid.jobs.cli", "serve", "--index", str(index), "--port", str(port)]
    return subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def wait_ready(client, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if client.get("/api/health").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise TimeoutError(f"the server did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


def burst(client, data: bytes, uploads: int) -> dict[str, int]:
    """``uploads`` simultaneous uploads (released together by a barrier); returns counts per status."""
    gate = threading.Barrier(uploads)

    def one(_: int) -> int:
        gate.wait()
        files = {"image": ("big.png", data, "image/png")}
        return client.post("/api/search", files=files, data={"k": "3"}, timeout=600).status_code

    with ThreadPoolExecutor(max_workers=uploads) as pool:
        codes = list(pool.map(one, range(uploads)))
    return {str(code): codes.count(code) for code in sorted(set(codes))}


def measure(uploads: int, width: int, height: int, settle: float) -> dict:
    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "crops").mkdir()
        index = build_index(root, write_checkpoint(root / "small.pt"))
        port, log = free_port(), root / "server.log"
        proc = start_server(index, port, log)
        limits = httpx.Limits(max_connections=uploads + 4)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", limits=limits) as client:
                wait_ready(client, proc, log)
                warm = (root / "crops").iterdir().__next__().read_bytes()
                client.post("/api/search", files={"image": ("w.jpg", warm, "image/jpeg")})
                before = proc_kib(proc.pid, "VmRSS")
                data = png_bytes(width, height)
                start = time.perf_counter()
                statuses = burst(client, data, uploads)
                seconds = time.perf_counter() - start
                time.sleep(settle)
                after, peak = proc_kib(proc.pid, "VmRSS"), proc_kib(proc.pid, "VmHWM")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return {"uploads": uploads, "image": f"{width}x{height} PNG, {len(data)} bytes", "statuses": statuses,
            "burst_seconds": round(seconds, 2), "settle_seconds": settle,
            "rss_before_mib": round(before / 1024, 1), "peak_rss_mib": round(peak / 1024, 1),
            "rss_after_mib": round(after / 1024, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=50)
    parser.add_argument("--size", default="4900x5000", help="WIDTHxHEIGHT of the uploaded PNG")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to wait after the burst")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    print(json.dumps(measure(args.uploads, width, height, args.settle), indent=1))


if __name__ == "__main__":
    main()
