"""Few-label detection probe: fine-tune the backbone (pretrained or random) with a small CenterPoint-style
BEV head on a labelled fraction of the training sweeps, and score car AP on the val sweeps.

Data: KITTI 3D-object layout with `training/label_2` and `training/calib` (as `tools/make_synthetic.py`
writes). Like OpenPCDet's KITTI models, the network sees the points inside POINT_CLOUD_RANGE and camera 2's
view only. Ground truth: the cars whose centre is in the range and whose box holds at least MIN_POINTS input
points; cars with fewer, vans and trucks are ignored (a detection on them counts neither way).

Head (on `spatial_features_2d`, 512 channels at stride 8): a shared 1x1 conv, then a car heatmap (CenterNet
focal loss on Gaussian peaks) and a box regression per cell (x, y offset in the cell, z, log length / width /
height, sin / cos heading; L1 at the peaks). Both arms share the seed of everything: backbone init (scratch),
head init, labelled subset, batch order, augmentation (y-flip)."""
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..datasets.readers.kitti_label import labels_to_lidar_boxes, points_in_boxes, read_calib, read_labels
from ..datasets.sweep_dataset import SweepDataset
from ..models import build_network
from ..spconv_compat import single_threaded_on_cpu
from .batch import batch_to_device
from .batchnorm import recalibrate_batchnorm
from .box_metrics import car_metrics
from .evaluation import load_trained
from .export import BACKBONE_PREFIXES

MIN_POINTS = 5
IGNORED_KINDS = ('Car', 'Van', 'Truck')
REGRESSION = ('dx', 'dy', 'z', 'log_l', 'log_w', 'log_h', 'sin', 'cos')
TOP_K = 50
MIN_SCORE = 0.05


def kitti_frame_files(sweep_path) -> dict:
    """label_2 and calib files of `training/velodyne/<id>.bin`."""
    sweep_path = Path(sweep_path)
    training = sweep_path.parent.parent
    return {'label': training / 'label_2' / f'{sweep_path.stem}.txt',
            'calib': training / 'calib' / f'{sweep_path.stem}.txt'}


def in_camera_view(xyz, calib, image_size=(1242, 375)) -> np.ndarray:
    """Mask of lidar points in front of camera 2 that project inside its image (OpenPCDet's FOV flag)."""
    uv, depth = calib.rect_to_image(calib.lidar_to_rect(xyz))
    return (depth > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < image_size[0]) & (uv[:, 1] >= 0) & (uv[:, 1] < image_size[1])


def load_frame(dataset: SweepDataset, index: int) -> dict:
    """Points (range and camera view, used columns), 'gt' car boxes, 'ignore' boxes and the calibration."""
    points, _ = dataset.source.read(index)
    files = kitti_frame_files(dataset.source.path(index))
    calib, labels = read_calib(files['calib']), read_labels(files['label'])
    points = points[dataset.crop_mask(points[:, :3]) & in_camera_view(points[:, :3], calib)]
    boxes = labels_to_lidar_boxes(labels, calib)
    hits = points_in_boxes(points[:, :3], boxes).sum(0)
    car = (labels.kind == 'Car') & dataset.crop_mask(boxes[:, :3]) & (hits >= MIN_POINTS)
    ignore = np.isin(labels.kind, IGNORED_KINDS) & ~car
    return {'frame_id': dataset.source.frame_id(index), 'calib': calib, 'gt': boxes[car], 'ignore': boxes[ignore],
            'points': np.ascontiguousarray(points[:, dataset.used_columns], dtype=np.float32)}


def flip_y(frame: dict) -> dict:
    """The frame mirrored about the x axis (points, boxes and headings)."""
    out = dict(frame)
    out['points'] = frame['points'].copy()
    out['points'][:, 1] *= -1
    for key in ('gt', 'ignore'):
        boxes = frame[key].copy()
        boxes[:, 1] *= -1
        boxes[:, 6] *= -1
        out[key] = boxes
    return out


def collate(dataset: SweepDataset, frames: list) -> dict:
    """Voxelize frames into an OpenPCDet batch_dict."""
    batch = {'batch_size': len(frames)}
    parts = {'points': [], 'voxels': [], 'voxel_coords': [], 'voxel_num_points': []}
    for b, frame in enumerate(frames):
        voxels = dataset.voxelizer(frame['points'])
        parts['points'].append(np.pad(frame['points'], ((0, 0), (1, 0)), constant_values=b))
        parts['voxel_coords'].append(np.pad(voxels['voxel_coords'], ((0, 0), (1, 0)), constant_values=b))
        parts['voxels'].append(voxels['voxels'])
        parts['voxel_num_points'].append(voxels['voxel_num_points'])
    batch.update({key: np.concatenate(value) for key, value in parts.items()})
    return batch


def gaussian_radius(length_cells: float, width_cells: float, min_overlap: float = 0.1) -> float:
    """CornerNet's radius: the largest centre error at which a box of this size keeps `min_overlap` IoU."""
    h, w = length_cells, width_cells
    b1, c1 = h + w, w * h * (1 - min_overlap) / (1 + min_overlap)
    b2, c2 = 2 * (h + w), (1 - min_overlap) * w * h
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (h + w), (min_overlap - 1) * w * h
    return min((b1 + math.sqrt(b1 ** 2 - 4 * c1)) / 2, (b2 + math.sqrt(b2 ** 2 - 16 * c2)) / 2,
               (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2)


class BevGrid:
    """Cells of the stride-8 BEV map: lidar x, y <-> (row = y cell, column = x cell)."""

    def __init__(self, dataset: SweepDataset, stride: int = 8):
        self.low = dataset.point_cloud_range[:2].astype(np.float64)
        self.cell = dataset.voxel_size[:2].astype(np.float64) * stride
        self.width, self.height = (int(n) // stride for n in dataset.grid_size[:2])

    def targets(self, boxes: np.ndarray) -> tuple:
        """(heatmap (1, H, W), flat cell index (K,), regression targets (K, 8)) of car boxes (K, 7)."""
        heatmap = np.zeros((1, self.height, self.width), dtype=np.float32)
        cells, targets = [], []
        ys, xs = np.mgrid[0:self.height, 0:self.width]
        for box in boxes:
            cx, cy = (box[:2] - self.low) / self.cell
            ix, iy = int(cx), int(cy)
            if not (0 <= ix < self.width and 0 <= iy < self.height):
                continue
            radius = max(2, int(gaussian_radius(box[3] / self.cell[0], box[4] / self.cell[1])))
            sigma = (2 * radius + 1) / 6
            peak = np.exp(-((xs - ix) ** 2 + (ys - iy) ** 2) / (2 * sigma ** 2))
            peak[(np.abs(xs - ix) > radius) | (np.abs(ys - iy) > radius)] = 0
            heatmap[0] = np.maximum(heatmap[0], peak)
            cells.append(iy * self.width + ix)
            targets.append([cx - ix, cy - iy, box[2], *np.log(box[3:6]), np.sin(box[6]), np.cos(box[6])])
        return heatmap, np.array(cells, dtype=np.int64), np.array(targets, dtype=np.float32).reshape(-1, 8)

    def decode(self, heatmap_logits: torch.Tensor, regression: torch.Tensor, top_k=TOP_K, min_score=MIN_SCORE):
        """Boxes (D, 7) and scores (D,) of one sample: 3x3 local maxima of the heatmap, best `top_k`."""
        heat = heatmap_logits.sigmoid()
        peaks = heat * (F.max_pool2d(heat[None], 3, stride=1, padding=1)[0] == heat)
        scores, flat = peaks.reshape(-1).topk(min(top_k, peaks.numel()))
        keep = scores >= min_score
        scores, flat = scores[keep], flat[keep]
        rows, cols = flat // self.width, flat % self.width
        reg = regression.reshape(regression.shape[0], -1)[:, flat].T.double().cpu().numpy()
        x = (cols.cpu().numpy() + reg[:, 0]) * self.cell[0] + self.low[0]
        y = (rows.cpu().numpy() + reg[:, 1]) * self.cell[1] + self.low[1]
        size = np.exp(np.clip(reg[:, 3:6], -3.0, 3.0))
        boxes = np.column_stack([x, y, reg[:, 2], size, np.arctan2(reg[:, 6], reg[:, 7])])
        return boxes, scores.double().cpu().numpy()


class CenterBevHead(nn.Module):
    """The probe's head: a shared 1x1 conv (cheap on 512 channels), then heatmap and regression branches
    (3x3 conv + 1x1 each)."""

    def __init__(self, in_channels: int, hidden: int = 32):
        super().__init__()

        def block(cin, kernel):
            return [nn.Conv2d(cin, hidden, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(hidden), nn.ReLU()]
        self.shared = nn.Sequential(*block(in_channels, 1))
        self.heatmap = nn.Sequential(*block(hidden, 3), nn.Conv2d(hidden, 1, 1))
        self.regression = nn.Sequential(*block(hidden, 3), nn.Conv2d(hidden, len(REGRESSION), 1))
        nn.init.constant_(self.heatmap[-1].bias, -2.19)  # prior 0.1 on every cell

    def forward(self, bev):
        shared = self.shared(bev)
        return self.heatmap(shared), self.regression(shared)


def focal_loss(logits, target):
    """CenterNet's penalty-reduced focal loss, normalised by the number of peaks."""
    p = logits.sigmoid().clamp(1e-4, 1 - 1e-4)
    positive = target.eq(1).float()
    pos = -(torch.log(p) * (1 - p) ** 2 * positive).sum()
    neg = -(torch.log(1 - p) * p ** 2 * (1 - target) ** 4 * (1 - positive)).sum()
    return (pos + neg) / positive.sum().clamp_min(1.0)


class DetectionProbe(nn.Module):
    """The backbone stack of an ALSO model (its occupancy head unused) with a CenterBevHead."""

    def __init__(self, backbone, head):
        super().__init__()
        self.backbone, self.head = backbone, head

    def parameters_to_train(self):
        return [p for n, p in self.backbone.named_parameters() if n.startswith(BACKBONE_PREFIXES)] + \
            list(self.head.parameters())

    def forward(self, batch):
        bev = self.backbone.encode(batch)['spatial_features_2d']
        return self.head(bev)


def build_probe(model_cfg, dataset, ckpt, seed: int) -> DetectionProbe:
    """Backbone from `ckpt` (None: random init drawn from `seed`, as tools/probe.py draws it) and a head drawn
    from `seed` (the same head for both arms)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        backbone = build_network(model_cfg, dataset)
    if ckpt is not None:
        load_trained(backbone, ckpt, backbone_only=True)
    with torch.random.fork_rng():
        torch.manual_seed(seed + 1)
        head = CenterBevHead(backbone.backbone_2d.num_bev_features)
    return DetectionProbe(backbone, head)


def probe_loss(model, grid, batch, frames, device):
    """Focal heatmap loss + L1 box regression at the peaks; `batch` is what `model` takes."""
    heat_logits, regression = model(batch_to_device(batch, device))
    targets = [grid.targets(frame['gt']) for frame in frames]
    heat_target = torch.from_numpy(np.stack([t[0] for t in targets])).to(device)
    loss_heat = focal_loss(heat_logits, heat_target)
    reg_pred, reg_target = [], []
    for b, (_, cells, target) in enumerate(targets):
        reg_pred.append(regression[b].reshape(len(REGRESSION), -1)[:, torch.from_numpy(cells).to(device)].T)
        reg_target.append(torch.from_numpy(target).to(device))
    reg_pred, reg_target = torch.cat(reg_pred), torch.cat(reg_target)
    loss_reg = F.l1_loss(reg_pred, reg_target, reduction='sum') / max(len(reg_target), 1)
    return loss_heat + loss_reg, {'heatmap': loss_heat.item(), 'regression': loss_reg.item()}


@torch.no_grad()
def evaluate_probe(model, grid, frames, device, batch_size, batch_of) -> dict:
    """Car AP (box_metrics.car_metrics) of the model's detections on `frames` (`batch_of(frames)` is what the
    model takes); detections whose centre is out of camera 2's view are dropped, like the points."""
    model.eval()
    scored = []
    for start in range(0, len(frames), batch_size):
        chunk = frames[start:start + batch_size]
        heat, regression = model(batch_to_device(batch_of(chunk), device))
        for b, frame in enumerate(chunk):
            boxes, scores = grid.decode(heat[b], regression[b])
            seen = in_camera_view(boxes[:, :3], frame['calib']) if len(boxes) else np.zeros(0, bool)
            scored.append({'boxes': boxes[seen], 'scores': scores[seen], 'gt': frame['gt'], 'ignore': frame['ignore']})
    return car_metrics(scored)


def labelled_subset(num_train: int, fraction: float, seed: int) -> np.ndarray:
    """Indices of the labelled training sweeps: round(fraction x num_train), at least one, drawn from `seed`."""
    count = min(num_train, max(1, round(fraction * num_train)))
    return np.sort(np.random.default_rng([seed, 7]).choice(num_train, count, replace=False))


class CachedBev(nn.Module):
    """finetune='head': the frozen backbone's BEV maps, computed once per frame (and per flip); the batch
    carries the frames' cache keys."""

    def __init__(self, head):
        super().__init__()
        self.head, self.maps = head, {}

    def parameters_to_train(self):
        return list(self.head.parameters())

    def forward(self, batch):
        return self.head(torch.cat([self.maps[key] for key in batch['keys']]))


def freeze_backbone(model: DetectionProbe, dataset, frames, bn_frames, device) -> CachedBev:
    """Recalibrate the backbone's BatchNorm on `bn_frames` (both arms alike), freeze it, and cache the BEV
    map of every frame in `frames` (dicts with a 'key')."""
    def encode(frame_list):
        return model.backbone.encode(batch_to_device(collate(dataset, frame_list), device))['spatial_features_2d']
    recalibrate_batchnorm(model.backbone, lambda frame: encode([frame]), bn_frames)
    cached = CachedBev(model.head)
    with torch.no_grad():
        for frame in frames:
            cached.maps[frame['key']] = encode([frame]).detach()
    return cached


def run_detection_probe(model_cfg, data_cfg, ckpt=None, *, label_fraction: float = 0.05, seed: int = 0,
                        iterations: int = 200, eval_every: int = 50, batch_size: int = 2, lr: float = 1e-3,
                        weight_decay: float = 0.01, grad_clip: float = 10.0, finetune: str = 'all',
                        bn_sweeps: int = 8, device='cpu', max_val: int = None, writer=None, tag: str = '',
                        progress: bool = True) -> dict:
    """Train on the labelled subset and evaluate on the val split every `eval_every` iterations and at the
    end. finetune='all': backbone and head (BatchNorm in train mode); 'head': the backbone is frozen after its
    BatchNorm statistics are recalibrated on the labelled sweeps plus the first `bn_sweeps` training sweeps
    (both arms), its BEV maps are cached, and only the head trains. Returns 'curve' (iteration -> metrics),
    'final', 'loss' (per iteration), 'labelled_sweeps', 'val_sweeps', 'val_cars', 'seconds'."""
    if finetune not in ('all', 'head'):
        raise ValueError(f"finetune must be 'all' or 'head', not {finetune!r}")
    device = torch.device(device)
    started = time.time()
    train_set, val_set = SweepDataset(data_cfg, training=True), SweepDataset(data_cfg, training=False)
    labelled = labelled_subset(len(train_set.source), label_fraction, seed)
    train_frames = [load_frame(train_set, int(i)) for i in labelled]
    train_frames = [dict(f, key=('train', i, flip)) for i, frame in enumerate(train_frames)
                    for flip, f in ((False, frame), (True, flip_y(frame)))]
    val_frames = [dict(load_frame(val_set, i), key=('val', i)) for i in range(len(val_set.source))[:max_val]]
    grid = BevGrid(train_set)
    model = build_probe(model_cfg, train_set, ckpt, seed).to(device)
    rng = np.random.default_rng([seed, 11])
    curve, losses = {}, []
    with single_threaded_on_cpu(device):
        if finetune == 'head':
            extra = [load_frame(train_set, i) for i in range(min(bn_sweeps, len(train_set.source)))]
            bn_frames = [f for f in train_frames if not f['key'][2]] + extra
            model = freeze_backbone(model, train_set, tqdm(train_frames + val_frames, desc=f'{tag} cache',
                                                           disable=not progress, leave=False), bn_frames, device)

        def batch_of(frames):
            return {'keys': [f['key'] for f in frames]} if finetune == 'head' else collate(train_set, frames)
        optimizer = torch.optim.AdamW(model.parameters_to_train(), lr=lr, weight_decay=weight_decay)
        for it in tqdm(range(1, iterations + 1), desc=tag or 'det probe', disable=not progress, leave=False):
            model.train()
            frames = [train_frames[i] for i in rng.integers(len(train_frames), size=batch_size)]
            loss, parts = probe_loss(model, grid, batch_of(frames), frames, device)
            optimizer.zero_grad()
            loss.backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(model.parameters_to_train(), grad_clip)
            optimizer.step()
            losses.append(loss.item())
            if writer is not None:
                writer.add_scalar(f'{tag}/loss', loss.item(), it)
                for key, value in parts.items():
                    writer.add_scalar(f'{tag}/loss_{key}', value, it)
            if it % eval_every == 0 or it == iterations:
                curve[it] = evaluate_probe(model, grid, val_frames, device, batch_size, batch_of)
                if writer is not None:
                    for key, value in curve[it].items():
                        writer.add_scalar(f'{tag}/val_{key}', value, it)
    return {'curve': curve, 'final': curve[iterations], 'loss': losses, 'labelled_sweeps': len(labelled),
            'val_sweeps': len(val_frames), 'val_cars': int(sum(len(f['gt']) for f in val_frames)),
            'seconds': time.time() - started}
