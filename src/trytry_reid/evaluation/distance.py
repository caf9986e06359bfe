"""The distance metrics (one catalog for the triplet loss and retrieval), query x gallery distances in
chunks, flip-test fusion and average query expansion."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from trytry_reid.catalog import lookup

# Squared distances are clamped to at least this before the sqrt: sqrt has an infinite slope at 0, and the
# clamp's zero gradient keeps identical rows from producing inf/NaN gradients in the triplet loss.
MIN_SQUARED_DISTANCE = 1e-12


def euclidean_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[N, D] x [M, D] -> [N, M]`` Euclidean distances via ``|a|^2 + |b|^2 - 2 a.b`` (one matmul).

    The expansion cancels in float32 (two identical rows of norm ~10 can come out ~1e-3 apart); the squared
    values are clamped at ``MIN_SQUARED_DISTANCE``, so identical rows give ~1e-6, never NaN. Differentiable.
    """
    squared = a.pow(2).sum(dim=1)[:, None] + b.pow(2).sum(dim=1)[None, :] - 2.0 * (a @ b.T)
    return squared.clamp(min=MIN_SQUARED_DISTANCE).sqrt()


def cosine_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[N, D] x [M, D] -> [N, M]`` cosine distances ``1 - cos(a, b)`` in [0, 2]. Differentiable."""
    return 1.0 - F.normalize(a, dim=1) @ F.normalize(b, dim=1).T


# The metrics of the toolkit: the triplet loss (``loss.triplet.metric``) and retrieval (``test.metric``).
DISTANCES = {"euclidean": euclidean_distances, "cosine": cosine_distances}


def as_float_tensor(x: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    """A 2-D float tensor on CPU (float64 stays float64, everything else becomes float32)."""
    t = torch.as_tensor(x).detach().cpu()
    if t.ndim != 2:
        raise ValueError(f"{name} must be a 2-D [N, D] feature matrix, got shape {tuple(t.shape)}")
    return t if t.dtype == torch.float64 else t.float()


def compute_distance(qf: np.ndarray | torch.Tensor, gf: np.ndarray | torch.Tensor, metric: str = "cosine",
                     chunk_size: int = 4096) -> np.ndarray:
    """[Q, G] float32 distances (``DISTANCES[metric]``), smaller is closer, ``chunk_size`` query rows at a
    time, so the only large buffer is the [Q, G] result."""
    distance = lookup(DISTANCES, metric, "metric")
    q, g = as_float_tensor(qf, "qf"), as_float_tensor(gf, "gf")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"qf and gf must have the same feature dimension, got {q.shape[1]} and {g.shape[1]}")
    dtype = torch.promote_types(q.dtype, g.dtype)
    q, g = q.to(dtype), g.to(dtype)
    out = np.empty((q.shape[0], g.shape[0]), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, q.shape[0], chunk_size):
            out[start:start + chunk_size] = distance(q[start:start + chunk_size], g).float().numpy()
    return out


def fuse_flip(f: np.ndarray | torch.Tensor, f_flipped: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Flip-test fusion: mean of the features of an image and its horizontal mirror, L2-normalised ([N, D])."""
    a, b = torch.as_tensor(f), torch.as_tensor(f_flipped)
    if a.shape != b.shape:
        raise ValueError(f"feature shapes differ: {tuple(a.shape)} vs flipped {tuple(b.shape)}")
    return F.normalize((a + b) / 2.0, dim=1)


def average_query_expansion(qf: np.ndarray | torch.Tensor, gf: np.ndarray | torch.Tensor, k: int = 5,
                            alpha: float = 3.0, chunk_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Average query expansion (alpha-weighted, as in Radenovic et al. 2018 "alpha-QE").

    Features are L2-normalised; each query q is replaced by
        q' = normalize(q + sum_{i=1..k} w_i g_i),  w_i = max(cos(q, g_i), 0) ** alpha,
    where g_1..g_k are its k most similar gallery features (alpha = 0 gives plain AQE with w_i = 1).
    The gallery is returned normalised and otherwise unchanged. Returns float32 (qf', gf').
    """
    if k < 1:
        raise ValueError(f"AQE needs k >= 1 neighbours, got k={k}")
    q = F.normalize(as_float_tensor(qf, "qf"), dim=1)
    g = F.normalize(as_float_tensor(gf, "gf"), dim=1).to(q.dtype)
    k = min(k, g.shape[0])
    expanded = torch.empty_like(q)
    for start in range(0, q.shape[0], chunk_size):
        block = q[start:start + chunk_size]
        sims, idx = (block @ g.T).topk(k, dim=1)
        weights = sims.clamp(min=0) ** alpha
        expanded[start:start + len(block)] = block + (weights[:, :, None] * g[idx]).sum(1)
    return F.normalize(expanded, dim=1).float().numpy(), g.float().numpy()
