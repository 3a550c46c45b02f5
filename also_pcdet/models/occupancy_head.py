"""ALSO's occupancy head: BEV features -> latents -> per (query, latent) pair occupancy and intensity."""
import torch
from torch import nn
import torch.nn.functional as F

from .column_neighbours import column_neighbours


def build_decoder(in_channels: int, hidden: int, num_layers: int) -> nn.Sequential:
    """(latent + relative xyz) -> `num_layers` Linear(hidden) with ReLU between all but the last
    two -> Linear(2): output 0 is the occupancy logit, output 1 the intensity."""
    layers, width = [], in_channels
    for i in range(num_layers):
        layers.append(nn.Linear(width, hidden))
        if i < num_layers - 1:
            layers.append(nn.ReLU(inplace=True))
        width = hidden
    layers.append(nn.Linear(width, 2))
    return nn.Sequential(*layers)


def occupancy_counts(logits: torch.Tensor, target: torch.Tensor) -> dict:
    """True/false positives and negatives of occupancy at sigmoid > 0.5, as 0-d tensors on the logits'
    device (no host synchronisation; sum them over batches and read them when needed)."""
    pred, truth = logits > 0, target > 0.5
    return {'tp': (pred & truth).sum(), 'fp': (pred & ~truth).sum(), 'fn': (~pred & truth).sum(),
            'tn': (~pred & ~truth).sum()}


def _at_least_one(count):
    return count.clamp(min=1) if torch.is_tensor(count) else max(count, 1)


def metrics_from_counts(counts: dict) -> dict:
    """IoU, accuracy, precision and recall from `occupancy_counts` (possibly summed over batches): tensors
    for tensor counts (computed on their device), floats for numbers.

    `occ_iou_occupied` is the IoU of the occupied class alone; `occ_miou` is the mean of the empty-class and
    occupied-class IoUs, the number the official ALSO code logs as `iou` (its 2x2 confusion matrix)."""
    tp, fp, fn, tn = counts['tp'], counts['fp'], counts['fn'], counts['tn']
    occupied, empty = tp / _at_least_one(tp + fp + fn), tn / _at_least_one(tn + fn + fp)
    return {'occ_iou_occupied': occupied, 'occ_iou_empty': empty, 'occ_miou': (occupied + empty) / 2,
            'occ_acc': (tp + tn) / _at_least_one(tp + fp + fn + tn),
            'occ_precision': tp / _at_least_one(tp + fp), 'occ_recall': tp / _at_least_one(tp + fn)}


def occupancy_metrics(logits: torch.Tensor, target: torch.Tensor) -> dict:
    """`metrics_from_counts` of occupancy at sigmoid > 0.5, as 0-d tensors on the device."""
    return metrics_from_counts(occupancy_counts(logits, target))


def read_scalars(values: dict) -> dict:
    """The dict with its 0-d tensors read as Python floats, all in one device-to-host transfer."""
    keys = [key for key, value in values.items() if torch.is_tensor(value)]
    if not keys:
        return dict(values)
    host = torch.stack([values[key].detach().float().reshape(()) for key in keys]).tolist()
    return dict(values, **dict(zip(keys, host)))


def bev_stride(grid_size, feature_hw) -> int:
    """Voxels per cell of a BEV map of `feature_hw` (H, W) cells over the voxel grid `grid_size` (x, y, ...):
    one whole number along x and y (8 for SECOND), else ValueError."""
    height, width = (int(v) for v in feature_hw)
    stride_x, stride_y = grid_size[0] / width, grid_size[1] / height
    if stride_x != int(stride_x) or stride_x != stride_y or stride_x < 1:
        raise ValueError(f'BEV map {height}x{width} is not an integer stride of grid {list(grid_size[:2])}')
    return int(stride_x)


def decode_pairs(decoder: nn.Sequential, cell_latents: torch.Tensor, pair_cell: torch.Tensor,
                 relative: torch.Tensor, cells: str = 'auto') -> torch.Tensor:
    """`decoder(cat([cell_latents[pair_cell], relative], 1))` with the latent part of the first Linear
    applied once per BEV cell instead of once per (query, latent) pair.

    First layer: W [latent | rel] + b = W_latent latent + W_rel rel + b, about a third of the decoder's
    FLOPs when done per pair. `cells`: 'all' projects every cell of the map (no search, no host sync),
    'referenced' only the cells some pair uses (fewer rows, one host sync for their count); 'auto' takes
    'all' on a GPU when there are at least as many pairs as cells, else 'referenced' (both are measured in
    benchmarks/RESULTS.md)."""
    first = decoder[0]
    channels = cell_latents.shape[1]
    w_latent, w_rel = first.weight[:, :channels], first.weight[:, channels:]
    if cells == 'auto':
        on_gpu = cell_latents.device.type != 'cpu'
        cells = 'all' if on_gpu and len(pair_cell) >= len(cell_latents) else 'referenced'
    if cells == 'all':
        per_cell, index = F.linear(cell_latents, w_latent), pair_cell
    elif cells == 'referenced':
        used = torch.zeros(len(cell_latents), dtype=torch.bool, device=pair_cell.device)
        used[pair_cell] = True
        slot = torch.cumsum(used, 0) - 1                                            # cell -> its row below
        per_cell, index = F.linear(cell_latents[used.nonzero().squeeze(1)], w_latent), slot[pair_cell]
    else:
        raise ValueError(f"cells={cells!r}: expected 'auto', 'all' or 'referenced'")
    hidden = per_cell[index] + F.linear(relative, w_rel, first.bias)
    return decoder[1:](hidden)


class AlsoOccupancyHead(nn.Module):
    """Registered as an OpenPCDet dense head; built with the dense-head constructor arguments."""

    def __init__(self, model_cfg, input_channels, num_class, class_names, grid_size, point_cloud_range,
                 predict_boxes_when_training=False, voxel_size=None, **kwargs):
        super().__init__()
        self.model_cfg = model_cfg
        self.grid_size = [int(g) for g in grid_size]
        self.point_cloud_range = [float(v) for v in point_cloud_range]
        self.voxel_size = [float(v) for v in voxel_size]
        latent = model_cfg.LATENT_SIZE
        self.latent_proj = nn.Conv2d(input_channels, latent, kernel_size=1)
        self.decoder = build_decoder(latent + 3, model_cfg.DECODER_HIDDEN, model_cfg.DECODER_LAYERS)
        self.forward_ret_dict = {}

    def cell_size(self, feature_hw):
        """Metres per BEV cell, from the grid and the feature map shape (stride 8 for SECOND)."""
        stride = bev_stride(self.grid_size, feature_hw)
        return (self.voxel_size[0] * stride, self.voxel_size[1] * stride)

    def bev_latents(self, batch_dict):
        """(latents (N, L), map size (H, W), latent row of each of the B*H*W cells or None).

        A dense BEV map (`spatial_features_2d`) gives one latent per cell (row = flat cell, None returned).
        VoxelNeXt has no dense map: its `encoded_spconv_tensor` (2D, stride 8) gives latents only for its
        active cells, the same 1x1 projection applied to their features; inactive cells have row -1."""
        if 'spatial_features_2d' in batch_dict:
            latents = self.latent_proj(batch_dict['spatial_features_2d'])          # (B, L, H, W)
            batch, channels, height, width = latents.shape
            return latents.permute(0, 2, 3, 1).reshape(batch * height * width, channels), (height, width), None
        sparse = batch_dict['encoded_spconv_tensor']
        height, width = (int(s) for s in sparse.spatial_shape)
        latents = F.linear(sparse.features, self.latent_proj.weight.flatten(1), self.latent_proj.bias)
        b, y, x = sparse.indices.long().unbind(1)
        row = torch.full((int(batch_dict['batch_size']) * height * width,), -1, dtype=torch.long, device=b.device)
        row[(b * height + y) * width + x] = torch.arange(len(latents), device=b.device)
        return latents, (height, width), row

    def forward(self, batch_dict):
        latents, (height, width), row = self.bev_latents(batch_dict)
        queries = batch_dict['queries']
        q_index, cell, centres = column_neighbours(
            queries[:, 1:3], queries[:, 0], self.point_cloud_range[:2], self.cell_size((height, width)),
            (height, width), self.model_cfg.RADIUS, self.model_cfg.MAX_NEIGHBOURS,
            active=None if row is None else row >= 0)
        if row is not None:
            cell = row[cell]
        relative = queries[q_index, 1:4] - F.pad(centres, (0, 1))                  # latent sits at z = 0
        out = decode_pairs(self.decoder, latents, cell, relative)
        self.forward_ret_dict = {
            'occupancy_logits': out[:, 0], 'intensity': out[:, 1], 'query_index': q_index,
            'occupancy_target': batch_dict['query_occupancy'][q_index],
            'intensity_target': batch_dict['query_intensity'][q_index],
            'intensity_mask': batch_dict['query_intensity_mask'][q_index] > 0.5,
            'num_queries': len(queries),
        }
        return batch_dict

    def get_loss(self):
        """BCE on occupancy plus masked L1 on intensity, averaged over (query, latent) pairs."""
        ret, weights = self.forward_ret_dict, self.model_cfg.LOSS_WEIGHTS
        logits, target = ret['occupancy_logits'], ret['occupancy_target']
        if logits.numel() == 0:
            raise RuntimeError('no query has a latent within RADIUS: check POINT_CLOUD_RANGE and the queries')
        occ_loss = F.binary_cross_entropy_with_logits(logits, target)
        mask = ret['intensity_mask']
        error = torch.where(mask, (ret['intensity'] - ret['intensity_target']).abs(), 0.0)
        int_loss = error.sum() / mask.sum().clamp(min=1)                          # no host sync (mask.any())
        loss = weights.OCCUPANCY * occ_loss + weights.INTENSITY * int_loss
        tb_dict = {'loss_occupancy': occ_loss.detach(), 'loss_intensity': int_loss.detach(),
                   'pairs_per_query': logits.numel() / max(ret['num_queries'], 1)}
        tb_dict.update(occupancy_metrics(logits.detach(), target))
        return loss, tb_dict, {'occ_acc': tb_dict['occ_acc']}
