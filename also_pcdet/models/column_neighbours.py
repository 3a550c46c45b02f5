"""Query-to-latent search on a dense BEV grid: every cell centre within a radius in x-y, nearest first."""
import math

import torch


def window_offsets(radius: float, cell_size, device) -> torch.Tensor:
    """All (dx, dy) cell offsets whose centres can lie within `radius` of a point in the centre cell."""
    reach = [math.ceil(radius / float(c)) + 1 for c in cell_size]
    dx = torch.arange(-reach[0], reach[0] + 1, device=device)
    dy = torch.arange(-reach[1], reach[1] + 1, device=device)
    return torch.stack(torch.meshgrid(dx, dy, indexing='ij'), dim=-1).reshape(-1, 2)


def column_neighbours(query_xy: torch.Tensor, query_batch: torch.Tensor, grid_min, cell_size, grid_hw,
                      radius: float, max_neighbours: int, active: torch.Tensor = None):
    """Pair each query with the BEV cells whose centres lie within `radius` in x-y (at most
    `max_neighbours`, nearest kept); with `active` (B*H*W,) bool, only with active cells (a sparse BEV map).

    query_xy (Q, 2) metres; query_batch (Q,) batch index; grid_min (x, y) of the map's corner;
    cell_size (x, y) metres per BEV cell; grid_hw (H, W) with H along y and W along x.
    Returns query index (P,), flat cell index (P,) into a (B*H*W) map, and cell centres (P, 2).
    """
    device = query_xy.device
    height, width = grid_hw
    cell = torch.as_tensor(cell_size, dtype=query_xy.dtype, device=device)
    corner = torch.as_tensor(grid_min, dtype=query_xy.dtype, device=device)
    home = torch.floor((query_xy - corner) / cell).long()                          # (Q, 2)
    cells = home[:, None, :] + window_offsets(radius, cell_size, device)[None]     # (Q, K, 2)
    centres = corner + (cells.to(query_xy.dtype) + 0.5) * cell
    dist2 = ((centres - query_xy[:, None, :]) ** 2).sum(-1)
    inside = (cells[..., 0] >= 0) & (cells[..., 0] < width) & (cells[..., 1] >= 0) & (cells[..., 1] < height)
    if active is not None:
        ix, iy = cells[..., 0].clamp(0, width - 1), cells[..., 1].clamp(0, height - 1)
        inside &= active[(query_batch.long()[:, None] * height + iy) * width + ix]
    dist2 = torch.where(inside & (dist2 <= radius ** 2), dist2, torch.full_like(dist2, float('inf')))
    k = min(max_neighbours, dist2.shape[1])
    dist2, pick = torch.topk(dist2, k, dim=1, largest=False, sorted=False)
    valid = torch.isfinite(dist2)
    query_index = torch.arange(len(query_xy), device=device)[:, None].expand(-1, k)[valid]
    chosen = torch.gather(cells, 1, pick[..., None].expand(-1, -1, 2))[valid]    # (P, 2) as (ix, iy)
    flat = (query_batch[query_index].long() * height + chosen[:, 1]) * width + chosen[:, 0]
    return query_index, flat, corner + (chosen.to(query_xy.dtype) + 0.5) * cell
