"""Few-label linear probe: did pretraining teach the frozen backbone anything about the scene?

Each point of a labelled sweep (KITTI layout with `training/semantic/<id>.label`, uint32 class per
point, as `write_kitti_object` writes) gets the frozen backbone's features at its own voxel or pillar
concatenated with those of its BEV cell (`gather_point_features`: x_conv1 (16) + spatial_features_2d (512)
= 528 for SECOND; pillar and VoxelNeXt backbones give what they have). A linear classifier, standardised
inputs and class-balanced cross-entropy, is trained on a seeded `fraction` of the training split's
points and scored by mIoU on every point of the val split. Before features are taken, the BatchNorm statistics of
the backbone are re-estimated on the probe's training sweeps, for the checkpoint and the random backbone alike
(a random backbone otherwise normalises with its initial mean 0 / variance 1, which flatters pretraining)."""
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..datasets.readers import SweepError
from ..datasets.sweep_dataset import SweepDataset
from ..datasets.synthetic import CLASS_NAMES
from ..models import build_network
from ..models.occupancy_head import bev_stride
from ..spconv_compat import single_threaded_on_cpu
from .batch import batch_to_device
from .batchnorm import recalibrate_batchnorm
from .detection_probe import collate
from .evaluation import load_trained


def read_labels(sweep_path, num_points: int) -> np.ndarray:
    """Per-point class ids of `training/velodyne/<id>.bin` from `training/semantic/<id>.label`."""
    path = Path(sweep_path).parent.parent / 'semantic' / f'{Path(sweep_path).stem}.label'
    if not path.is_file():
        raise SweepError(path, 'label file not found (the probe needs per-point labels)')
    labels = np.fromfile(path, dtype=np.uint32)
    if len(labels) != num_points:
        raise SweepError(path, f'{len(labels)} labels for {num_points} points')
    return labels


def sparse_lookup(indices: torch.Tensor, features: torch.Tensor, cells: np.ndarray, shape) -> tuple:
    """Rows of a batch-0 sparse tensor (`indices` (N, 1 + D) as b then D cell coordinates, e.g. b, z, y, x)
    at cells `cells` (M, D) of a grid of `shape` (D,): (features (M, C) with zeros where missing, found (M,))."""
    shape = [int(s) for s in shape]
    keys = np.ravel_multi_index(indices[:, 1:].cpu().numpy().astype(np.int64).T, shape)
    order = np.argsort(keys)
    wanted = np.ravel_multi_index(np.asarray(cells, dtype=np.int64).T, shape)
    pos = np.minimum(np.searchsorted(keys[order], wanted), len(keys) - 1)
    found = keys[order[pos]] == wanted
    rows = features.new_zeros((len(wanted), features.shape[1]))
    rows[torch.from_numpy(found)] = features[torch.from_numpy(order[pos[found]])]
    return rows, found


def cropped_sweep(dataset: SweepDataset, source_index: int) -> tuple:
    """(points inside POINT_CLOUD_RANGE with the used columns, float32; the mask of them in the sweep)."""
    points, _ = dataset.source.read(source_index)
    inside = dataset.crop_mask(points[:, :3])
    return np.ascontiguousarray(points[inside][:, dataset.used_columns], dtype=np.float32), inside


def bev_cells(yx: np.ndarray, grid_size, map_hw) -> np.ndarray:
    """Cells (M, 2) as y, x of a BEV map of `map_hw` (H, W) cells over the voxel grid `grid_size` (x, y, z), for
    the voxel cells `yx` (M, 2)."""
    return np.minimum(yx // bev_stride(grid_size, map_hw), np.array([int(v) for v in map_hw]) - 1)


def gather_point_features(encoded: dict, zyx: np.ndarray, grid_size) -> tuple:
    """Backbone features of the points of sweep 0 of an `encode`d batch, whose voxels are `zyx` (M, 3) as
    z, y, x of the voxel grid `grid_size` (x, y, z): (features (M, C), found (M,), names), `names` like
    ['x_conv1 (16)', 'spatial_features_2d (512)']. Two parts, concatenated, each chosen by what the batch holds:

    - the point's own cell, stride 1: `multi_scale_3d_features['x_conv1']` (voxel and VoxelNeXt backbones),
      else the VFE's `pillar_features` at `pillar_coords` (b, y, x: PillarNet, VoxelNeXt2D) or `voxel_coords`
      (b, z, y, x: PointPillars and CenterPoint-pillar). `found` marks the points whose voxel or pillar
      reached the backbone (MAX_NUMBER_OF_VOXELS may drop some).
    - the point's BEV cell: the dense `spatial_features_2d`, else VoxelNeXt's sparse 2-D `encoded_spconv_tensor`
      (zeros where the cell is inactive)."""
    zyx = np.asarray(zyx, dtype=np.int64)
    grid_zyx = [int(g) for g in grid_size][::-1]
    voxel_stages = encoded.get('multi_scale_3d_features') or {}
    if 'x_conv1' in voxel_stages:
        conv1 = voxel_stages['x_conv1']
        fine, found = sparse_lookup(conv1.indices, conv1.features, zyx, conv1.spatial_shape)
        fine_name = 'x_conv1'
    elif 'pillar_features' in encoded:
        coords = encoded['pillar_coords'] if 'pillar_coords' in encoded else encoded['voxel_coords'][:, [0, 2, 3]]
        fine, found = sparse_lookup(coords, encoded['pillar_features'], zyx[:, 1:], grid_zyx[1:])
        fine_name = 'pillar_features'
    else:
        raise KeyError(f'no per-voxel features to probe: the batch holds neither multi_scale_3d_features[x_conv1] '
                       f'nor pillar_features (keys: {sorted(encoded)})')
    if 'spatial_features_2d' in encoded:
        bev = encoded['spatial_features_2d'][0]
        cells = torch.from_numpy(bev_cells(zyx[:, 1:], grid_size, bev.shape[1:])).to(bev.device)
        coarse, coarse_name = bev[:, cells[:, 0], cells[:, 1]].T, 'spatial_features_2d'
    elif 'encoded_spconv_tensor' in encoded and len(encoded['encoded_spconv_tensor'].spatial_shape) == 2:
        sparse = encoded['encoded_spconv_tensor']
        cells = bev_cells(zyx[:, 1:], grid_size, sparse.spatial_shape)
        coarse, _ = sparse_lookup(sparse.indices, sparse.features, cells, sparse.spatial_shape)
        coarse_name = 'encoded_spconv_tensor'
    else:
        raise KeyError(f'no BEV features to probe: the batch holds neither spatial_features_2d nor a 2-D '
                       f'encoded_spconv_tensor (keys: {sorted(encoded)})')
    names = [f'{fine_name} ({fine.shape[1]})', f'{coarse_name} ({coarse.shape[1]})']
    return torch.cat([fine, coarse.to(fine.dtype)], dim=1), found, names


@torch.no_grad()
def point_features(model, dataset: SweepDataset, source_index: int, device) -> tuple:
    """(features (M, C) float32 on the CPU, labels (M,), feature names) for the points of one sweep that are
    inside POINT_CLOUD_RANGE and whose voxel or pillar reached the backbone (see `gather_point_features`)."""
    points, inside = cropped_sweep(dataset, source_index)
    labels = read_labels(dataset.source.path(source_index), len(inside))[inside]
    with single_threaded_on_cpu(device):
        encoded = model.encode(batch_to_device(collate(dataset, [{'points': points}]), device))
    low, size = dataset.point_cloud_range[:3], dataset.voxel_size
    zyx = np.floor((points[:, :3] - low) / size).astype(np.int64)[:, ::-1]
    zyx = np.minimum(zyx, dataset.grid_size[::-1] - 1)
    features, found, names = gather_point_features(encoded, zyx, dataset.grid_size)
    keep = torch.from_numpy(found)
    return features[keep].float().cpu(), torch.from_numpy(labels[found].astype(np.int64)), names


def fit_linear(features: torch.Tensor, labels: torch.Tensor, num_classes: int, seed: int, steps: int):
    """Class-balanced logistic regression on standardised features (full-batch Adam, seeded init)."""
    mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        linear = nn.Linear(features.shape[1], num_classes)
    counts = torch.bincount(labels, minlength=num_classes).double()
    weights = torch.where(counts > 0, counts.sum() / (num_classes * counts.clamp_min(1)), 0.0).float()
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    optimizer = torch.optim.Adam(linear.parameters(), lr=0.01)
    inputs = (features - mean) / std
    for _ in range(steps):
        optimizer.zero_grad()
        loss_fn(linear(inputs), labels).backward()
        optimizer.step()
    return lambda x: linear((x - mean) / std).argmax(1)


def iou_from_confusion(confusion: np.ndarray) -> np.ndarray:
    """Per-class IoU from a (truth, prediction) confusion matrix; NaN for a class absent from both."""
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - tp
    return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def run_probe(model_cfg, data_cfg, ckpt=None, *, fraction: float = 0.01, seed: int = 0, steps: int = 300,
              device='cpu', max_sweeps: int = None, class_names=CLASS_NAMES) -> dict:
    """Probe the backbone of `ckpt` (an ALSO checkpoint or exported backbone; None: random init drawn from
    `seed`). Returns miou, iou (per class), class_names, train_points (labelled), val_points and features
    (the backbone outputs probed, with their widths)."""
    device = torch.device(device)
    train_set = SweepDataset(data_cfg, training=True)
    val_set = SweepDataset(data_cfg, training=False)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_network(model_cfg, train_set)
    if ckpt is not None:
        load_trained(model, ckpt, backbone_only=True)
    model.to(device)
    train_sweeps = range(len(train_set.source))[:max_sweeps]
    with single_threaded_on_cpu(device):
        recalibrate_batchnorm(model, lambda i: model.encode(batch_to_device(
            collate(train_set, [{'points': cropped_sweep(train_set, i)[0]}]), device)), train_sweeps)
    num_classes = len(class_names)

    picked_x, picked_y = [], []
    for i in train_sweeps:
        x, y, names = point_features(model, train_set, i, device)
        rng = np.random.default_rng([seed, i])
        pick = torch.from_numpy(rng.choice(len(y), max(1, round(fraction * len(y))), replace=False))
        picked_x.append(x[pick])
        picked_y.append(y[pick])
    x, y = torch.cat(picked_x), torch.cat(picked_y)
    labelled = y < num_classes
    classify = fit_linear(x[labelled], y[labelled], num_classes, seed, steps)

    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    val_points = 0
    for i in range(len(val_set.source))[:max_sweeps]:
        x, y, _ = point_features(model, val_set, i, device)
        keep = y < num_classes
        with torch.no_grad():
            pred = classify(x[keep])
        confusion += np.bincount((y[keep] * num_classes + pred).numpy(),
                                 minlength=num_classes ** 2).reshape(num_classes, num_classes)
        val_points += int(keep.sum())
    iou = iou_from_confusion(confusion)
    return {'miou': float(np.nanmean(iou)), 'iou': iou, 'class_names': list(class_names),
            'train_points': int(labelled.sum()), 'val_points': val_points, 'features': names}
