"""Query x gallery distances computed in chunks on torch, flip-test fusion and average query expansion."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

METRICS = ("euclidean", "cosine")


def as_float_tensor(x: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    """A 2-D float tensor on CPU (float64 stays float64, everything else becomes float32)."""
    t = torch.as_tensor(x).detach().cpu()
    if t.ndim != 2:
        raise ValueError(f"{name} must be a 2-D [N, D] feature matrix, got shape {tuple(t.shape)}")
    return t if t.dtype == torch.float64 else t.float()


def compute_distance(qf: np.ndarray | torch.Tensor, gf: np.ndarray | torch.Tensor, metric: str = "euclidean",
                     chunk_size: int = 4096) -> np.ndarray:
    """[Q, G] float32 distances, smaller is closer.

    euclidean: sqrt(max(|q|^2 + |g|^2 - 2 q.g, 0)) (true Euclidean distance; the clamp removes tiny negative
    values from floating-point cancellation). cosine: 1 - cos(q, g) on L2-normalised vectors, in [0, 2].
    Computed ``chunk_size`` query rows at a time, so the only large buffer is the [Q, G] result.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    q, g = as_float_tensor(qf, "qf"), as_float_tensor(gf, "gf")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"qf and gf must have the same feature dimension, got {q.shape[1]} and {g.shape[1]}")
    dtype = torch.promote_types(q.dtype, g.dtype)
    q, g = q.to(dtype), g.to(dtype)
    if metric == "cosine":
        q, g = F.normalize(q, dim=1), F.normalize(g, dim=1)
    out = np.empty((q.shape[0], g.shape[0]), dtype=np.float32)
    g_sq = (g * g).sum(1)
    for start in range(0, q.shape[0], chunk_size):
        block = q[start:start + chunk_size]
        sim = block @ g.T
        if metric == "cosine":
            dist = 1.0 - sim
        else:
            dist = ((block * block).sum(1, keepdim=True) + g_sq[None, :] - 2.0 * sim).clamp_(min=0).sqrt_()
        out[start:start + len(block)] = dist.float().numpy()
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
