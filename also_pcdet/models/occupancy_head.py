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
    """True/false positives and negatives of occupancy at sigmoid > 0.5, as Python ints."""
    pred, truth = logits > 0, target > 0.5
    return {'tp': int((pred & truth).sum()), 'fp': int((pred & ~truth).sum()),
            'fn': int((~pred & truth).sum()), 'tn': int((~pred & ~truth).sum())}


def metrics_from_counts(counts: dict) -> dict:
    """IoU, accuracy, precision and recall from `occupancy_counts` (possibly summed over batches).

    `occ_iou_occupied` is the IoU of the occupied class alone; `occ_miou` is the mean of the empty-class and
    occupied-class IoUs, the number the official ALSO code logs as `iou` (its 2x2 confusion matrix)."""
    tp, fp, fn, tn = counts['tp'], counts['fp'], counts['fn'], counts['tn']
    occupied, empty = tp / max(tp + fp + fn, 1), tn / max(tn + fn + fp, 1)
    return {'occ_iou_occupied': occupied, 'occ_iou_empty': empty, 'occ_miou': (occupied + empty) / 2,
            'occ_acc': (tp + tn) / max(tp + fp + fn + tn, 1),
            'occ_precision': tp / max(tp + fp, 1), 'occ_recall': tp / max(tp + fn, 1)}


def occupancy_metrics(logits: torch.Tensor, target: torch.Tensor) -> dict:
    """`metrics_from_counts` of occupancy at sigmoid > 0.5, as Python floats."""
    return metrics_from_counts(occupancy_counts(logits, target))


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
        height, width = feature_hw
        stride_x, stride_y = self.grid_size[0] / width, self.grid_size[1] / height
        if stride_x != int(stride_x) or stride_x != stride_y:
            raise ValueError(f'BEV map {height}x{width} is not an integer stride of grid {self.grid_size[:2]}')
        return (self.voxel_size[0] * stride_x, self.voxel_size[1] * stride_y)

    def forward(self, batch_dict):
        latents = self.latent_proj(batch_dict['spatial_features_2d'])              # (B, L, H, W)
        batch, channels, height, width = latents.shape
        queries = batch_dict['queries']
        q_index, cell, centres = column_neighbours(
            queries[:, 1:3], queries[:, 0], self.point_cloud_range[:2], self.cell_size((height, width)),
            (height, width), self.model_cfg.RADIUS, self.model_cfg.MAX_NEIGHBOURS)
        flat = latents.permute(0, 2, 3, 1).reshape(batch * height * width, channels)
        relative = queries[q_index, 1:4] - F.pad(centres, (0, 1))                  # latent sits at z = 0
        out = self.decoder(torch.cat([flat[cell], relative], dim=1))
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
        int_loss = (F.l1_loss(ret['intensity'][mask], ret['intensity_target'][mask]) if mask.any()
                    else ret['intensity'].sum() * 0)
        loss = weights.OCCUPANCY * occ_loss + weights.INTENSITY * int_loss
        tb_dict = {'loss_occupancy': occ_loss.item(), 'loss_intensity': int_loss.item(),
                   'pairs_per_query': logits.numel() / max(ret['num_queries'], 1)}
        tb_dict.update(occupancy_metrics(logits.detach(), target))
        return loss, tb_dict, {'occ_acc': round(tb_dict['occ_acc'], 4)}
