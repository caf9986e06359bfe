"""Gallery search speed on synthetic features, next to the memory-bandwidth floor measured in the same run.

    python benchmarks/search_speed.py [--gallery-size 1000000] [--dim 512] [--batch 1000]

The gallery is clustered like ReID features (``--images-per-id`` noisy views of each random identity
centre, L2-normalised); queries are fresh noisy views of random identities. Reported (JSON on stdout):
- ``floor_read_s``: one read of the gallery (a plain reduction over the array; min of repeats) and
  ``floor_copy_s`` (a plain array copy: read + write). Exact search must read the gallery once per query
  batch, so ``read`` is its floor; ``ratio_to_read_floor`` = search time / floor.
- ``matmul_s``: the bare float32 matmul queries x gallery (no top-k), the compute floor of a large batch.
- per backend: single-query latency (median), batched queries/s, and for ``faiss-ivf`` recall@10
  against exact search plus its build time.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import time

import numpy as np
import torch

from trytry_reid.serving.index import GalleryIndex
from trytry_reid.serving.search import recall_at_k


def clustered_unit_rows(count: int, dim: int, centers: np.ndarray, noise: float,
                        rng: np.random.Generator, chunk: int = 65536) -> np.ndarray:
    """``count`` rows: a random centre plus Gaussian noise, L2-normalised; built in chunks to bound memory."""
    out = np.empty((count, dim), dtype=np.float32)
    for start in range(0, count, chunk):
        rows = rng.standard_normal((min(chunk, count - start), dim), dtype=np.float32) * noise
        rows += centers[rng.integers(0, len(centers), len(rows))]
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        out[start:start + len(rows)] = rows
    return out


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def memory_floor(gallery: np.ndarray, repeats: int) -> dict:
    """Time of one read (torch sum, all threads) and one copy of the gallery array."""
    source = torch.from_numpy(gallery)
    read = min(timed(lambda: source.sum(), repeats))
    copy = min(timed(lambda target=torch.empty_like(source): target.copy_(source), repeats))
    gigabytes = gallery.nbytes / 1e9
    return {"floor_read_s": read, "floor_copy_s": copy, "read_gb_per_s": gigabytes / read,
            "copy_gb_per_s": 2 * gigabytes / copy}


def bench_backend(index: GalleryIndex, single: np.ndarray, batch: np.ndarray, k: int, floor: float,
                  repeats: int) -> tuple[dict, np.ndarray]:
    index.search(single[:1], k)                                    # warm-up (threads, page faults)
    latencies = [min(timed(lambda q=q: index.search(q[None], k), 1)) for q in single[:repeats]]
    start = time.perf_counter()
    _, ids = index.search(batch, k)
    batch_s = time.perf_counter() - start
    latency = statistics.median(latencies)
    return {"single_query_latency_s": latency, "single_ratio_to_read_floor": latency / floor,
            "batch_s": batch_s, "batch_queries_per_s": len(batch) / batch_s,
            "batch_ratio_to_read_floor": batch_s / floor}, ids


def run(args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(args.seed)
    num_ids = max(1, args.gallery_size // args.images_per_id)
    centers = rng.standard_normal((num_ids, args.dim), dtype=np.float32) / np.sqrt(args.dim)
    gallery = clustered_unit_rows(args.gallery_size, args.dim, centers, args.noise / np.sqrt(args.dim), rng)
    queries = clustered_unit_rows(args.batch, args.dim, centers, args.noise / np.sqrt(args.dim), rng)
    paths = [""] * args.gallery_size
    report = {"gallery": list(gallery.shape), "gallery_gb": gallery.nbytes / 1e9, "batch": args.batch,
              "k": args.k, "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
              "machine": platform.processor() or platform.machine()}
    report.update(memory_floor(gallery, args.repeats))
    floor = report["floor_read_s"]
    report["matmul_s"] = min(timed(lambda: torch.from_numpy(queries) @ torch.from_numpy(gallery).T, 1))
    results, exact_ids = {}, None
    for name, options in [("numpy", {}), ("faiss", {}),
                          ("faiss-ivf", {"nlist": args.nlist, "nprobe": args.nprobe})]:
        start = time.perf_counter()
        index = GalleryIndex(args.dim, name, **options)
        index.add(gallery, paths)
        build_s = time.perf_counter() - start
        results[name], ids = bench_backend(index, queries, queries, args.k, floor, args.repeats)
        results[name]["build_s"] = build_s
        if exact_ids is None:
            exact_ids = ids
        else:
            results[name][f"recall@{args.k}_vs_exact"] = recall_at_k(ids, exact_ids, args.k)
            results[name]["ids_identical_to_numpy"] = bool(np.array_equal(ids, exact_ids))
        del index
        gc.collect()
    report["backends"] = results
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery-size", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1000, help="queries in the batched measurement")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--images-per-id", type=int, default=20)
    parser.add_argument("--noise", type=float, default=0.6, help="per-view noise norm relative to the centre")
    parser.add_argument("--nlist", type=int, default=1024, help="IVF lists")
    parser.add_argument("--nprobe", type=int, default=16, help="IVF lists scanned per query")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    print(json.dumps(run(parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
