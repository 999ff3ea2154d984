"""Plain k-means in torch, used to initialise RQ-VAE codebooks (TIGER's recipe against dead codes)."""

from __future__ import annotations

import torch


def kmeans(points: torch.Tensor, num_clusters: int, iterations: int = 20, generator=None) -> torch.Tensor:
    """Return ``num_clusters`` centroids of ``points`` (N, d) after Lloyd iterations.

    Initialised with k-means++ so small catalogues still get spread-out codes. Empty clusters are
    re-seeded with the points farthest from their centroid, so every returned code is used at least
    once when ``N >= num_clusters``.
    """
    points = points.detach().float()
    n = points.size(0)
    if n == 0:
        raise ValueError("k-means needs at least one point")
    # k-means++ seeding
    first = torch.randint(n, (1,), generator=generator)
    centroids = [points[first]]
    closest = torch.cdist(points, centroids[0]).squeeze(1) ** 2
    for _ in range(1, num_clusters):
        total = closest.sum()
        if total <= 0:
            pick = torch.randint(n, (1,), generator=generator)
        else:
            pick = torch.multinomial(closest / total, 1, generator=generator)
        centroids.append(points[pick])
        closest = torch.minimum(closest, torch.cdist(points, centroids[-1]).squeeze(1) ** 2)
    centers = torch.cat(centroids, dim=0)
    for _ in range(iterations):
        distances = torch.cdist(points, centers)
        assign = distances.argmin(dim=1)
        counts = torch.bincount(assign, minlength=num_clusters).float()
        sums = torch.zeros_like(centers).index_add_(0, assign, points)
        empty = counts == 0
        centers = torch.where(empty[:, None], centers, sums / counts.clamp_min(1)[:, None])
        if empty.any():
            farthest = distances.gather(1, assign[:, None]).squeeze(1).argsort(descending=True)
            centers[empty] = points[farthest[: int(empty.sum())]]
    return centers
