"""Plain-torch stand-ins for torch_scatter's segment reductions (OpenPCDet's dynamic VFEs use torch_scatter)."""
import torch


def group_points(keys: torch.Tensor):
    """Group equal integer `keys`: (sorted unique keys (G,), group of each key (N,), group sizes (G,))."""
    return torch.unique(keys, return_inverse=True, return_counts=True)


def scatter_mean(values: torch.Tensor, group: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Mean of the rows of `values` (N, C) per group (G, C); `counts` (G,) are the group sizes."""
    total = values.new_zeros((len(counts), values.shape[1])).index_add_(0, group, values)
    return total / counts.to(values.dtype).clamp_min(1)[:, None]


def scatter_max(values: torch.Tensor, group: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Element-wise maximum of the rows of `values` (N, C) per group (G, C)."""
    out = values.new_zeros((num_groups, values.shape[1]))
    return out.scatter_reduce(0, group[:, None].expand_as(values), values, reduce='amax', include_self=False)


def cell_of_points(points_xyz: torch.Tensor, point_cloud_range, voxel_size, grid_size, dims: int):
    """Integer cell (N, dims) of each point along x, y(, z) and the mask of points inside the grid.

    `point_cloud_range`, `voxel_size`, `grid_size` are x, y, z sequences; only the first `dims` are used."""
    low = torch.as_tensor(point_cloud_range[:dims], dtype=points_xyz.dtype, device=points_xyz.device)
    size = torch.as_tensor(voxel_size[:dims], dtype=points_xyz.dtype, device=points_xyz.device)
    cells = torch.floor((points_xyz[:, :dims] - low) / size).long()
    limit = torch.as_tensor([int(g) for g in grid_size[:dims]], device=points_xyz.device)
    return cells, ((cells >= 0) & (cells < limit)).all(dim=1)
