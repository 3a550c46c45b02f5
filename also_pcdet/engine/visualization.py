"""Pictures of what the occupancy head predicts for one sweep: input points, a horizontal (BEV) and a
vertical occupancy slice, and the sweep's own queries scored against their labels."""
import numpy as np
import torch

from ..datasets.sweep_dataset import SweepDataset
from ..models.occupancy_head import metrics_from_counts, occupancy_counts
from ..spconv_compat import single_threaded_on_cpu
from .batch import batch_to_device
from .checkpoint import unwrap

OUTCOME_COLOURS = {'occupied, predicted occupied': '#1a9850', 'empty, predicted empty': '#b0b0b0',
                   'empty, predicted occupied': '#d73027', 'occupied, predicted empty': '#4575b4'}
# a query or slice cell that no BEV latent pairs with (VoxelNeXt: far from every active cell): grey in the slices
# (magma has no grey), a black cross among the queries
NO_LATENT, NO_LATENT_GREY = 'no latent within RADIUS', '#8c8c8c'


def per_query_probability(prob: torch.Tensor, query_index: torch.Tensor, num_queries: int) -> np.ndarray:
    """Mean of the pair probabilities of each query (NaN for a query with no latent within RADIUS)."""
    index = query_index.cpu()
    total = torch.bincount(index, weights=prob.detach().cpu().double(), minlength=num_queries)
    return (total / torch.bincount(index, minlength=num_queries)).float().numpy()


@torch.no_grad()
def occupancy_at(model, encoded: dict, xyz: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Predicted occupancy probability at points `xyz` (M, 3) of sweep 0 of an `encode`d batch (any BEV map the
    head decodes: dense, or VoxelNeXt's active cells only); NaN where no latent lies within RADIUS."""
    head = model.dense_head
    device = head.latent_proj.weight.device
    out = []
    for start in range(0, len(xyz), chunk):
        part = torch.as_tensor(xyz[start:start + chunk], dtype=torch.float32, device=device)
        zeros = torch.zeros(len(part), device=device)
        head(dict(encoded, queries=torch.nn.functional.pad(part, (1, 0)), query_occupancy=zeros,
                  query_intensity=zeros, query_intensity_mask=zeros))
        ret = head.forward_ret_dict
        out.append(per_query_probability(ret['occupancy_logits'].sigmoid(), ret['query_index'], len(part)))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def slice_grids(pc_range, resolution: float, bev_z: float, slice_y: float) -> dict:
    """Cell-centre query grids: 'bev' (ny, nx, 3) at height bev_z, 'side' (nz, nx, 3) at y = slice_y
    (z cells four times finer), with their imshow extents."""
    x0, y0, z0, x1, y1, z1 = (float(v) for v in pc_range)
    xs = np.arange(x0 + resolution / 2, x1, resolution)
    ys = np.arange(y0 + resolution / 2, y1, resolution)
    zs = np.arange(z0 + resolution / 8, z1, resolution / 4)
    gx, gy = np.meshgrid(xs, ys)
    sx, sz = np.meshgrid(xs, zs)
    return {'bev': np.stack([gx, gy, np.full_like(gx, bev_z)], -1), 'bev_extent': (x0, x1, y0, y1),
            'side': np.stack([sx, np.full_like(sx, slice_y), sz], -1), 'side_extent': (x0, x1, z0, z1)}


ZOOM_MARGIN_M = 8.0  # around the sensors in the zoomed query-origin panel


def draw_query_origins(ax, sample: dict, extent):
    """BEV of the sample's queries coloured by the sensor (ray-origin row) each was cast from, with the
    sensors' positions, within `extent` (x0, x1, y0, y1)."""
    from matplotlib.lines import Line2D

    queries, rows, origins = sample['queries'], sample['query_origin_index'], sample['ray_origins']
    names = sample.get('ray_origin_names') or tuple(f'origin {row}' for row in range(len(origins)))
    colours = [f'C{row % 10}' for row in range(len(origins))]
    counts = np.bincount(rows, minlength=len(origins))
    for row in np.argsort(-counts):  # the largest share drawn first, small, below the others
        mine = rows == row
        ax.scatter(queries[mine, 0], queries[mine, 1], s=1.5 if row == counts.argmax() else 6, c=colours[row],
                   linewidths=0, rasterized=True)
        ax.scatter(*origins[row, :2], marker='*', s=180, c=colours[row], edgecolors='black', linewidths=0.6)
    handles = [Line2D([], [], ls='', marker='o', color=colours[row], label=f'{names[row]}: {counts[row]:,}')
               for row in range(len(origins))]
    ax.legend(handles=handles, loc='upper right', fontsize=8, title='queries cast from (star: sensor)',
              title_fontsize=8)
    x0, x1, y0, y1 = extent
    ax.set(xlim=(x0, x1), ylim=(y0, y1), aspect='equal', xlabel='x (m)', ylabel='y (m)')
    ax.set_title(f'queries by the lidar they were cast from ({x1 - x0:.0f} x {y1 - y0:.0f} m)')


def gap_note(occupancy: np.ndarray) -> str:
    """Title note for a slice with cells no latent pairs with (VoxelNeXt: far from every active BEV cell)."""
    return f'\ngrey: {NO_LATENT}' if np.isnan(occupancy).any() else ''


@torch.no_grad()
def render_sample(model, sample: dict, device, resolution: float = 0.4, bev_z: float = -1.0,
                  slice_y: float = 0.0):
    """A 2x2 matplotlib Figure (not registered with pyplot) for one `SweepDataset` sample; use an eval-mode
    dataset (no augmentation). A sweep cast from several sensors (Waymo's five lidars) gets a third column:
    its queries coloured by the lidar they were cast from, whole and around the car."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    model = unwrap(model)
    was_training = model.training
    model.eval()
    batch = batch_to_device(SweepDataset.collate_batch([dict(sample, skipped=[])]), device)
    with single_threaded_on_cpu(device):
        encoded = model.encode(batch)
    model.dense_head(encoded)
    ret = model.dense_head.forward_ret_dict
    query_prob = per_query_probability(ret['occupancy_logits'].sigmoid(), ret['query_index'], len(sample['queries']))
    metrics = metrics_from_counts(occupancy_counts(ret['occupancy_logits'], ret['occupancy_target']))
    grids = slice_grids(model.dense_head.point_cloud_range, resolution, bev_z, slice_y)
    bev = occupancy_at(model, encoded, grids['bev'].reshape(-1, 3)).reshape(grids['bev'].shape[:2])
    side = occupancy_at(model, encoded, grids['side'].reshape(-1, 3)).reshape(grids['side'].shape[:2])
    model.train(was_training)

    points, queries = sample['points'], sample['queries']
    several_origins = len(sample.get('ray_origins', ())) > 1
    fig = Figure(figsize=(19.5 if several_origins else 13, 11))
    axes = fig.subplots(2, 3 if several_origins else 2)
    ax = axes[0, 0]
    scatter = ax.scatter(points[:, 0], points[:, 1], c=points[:, 2], s=0.3, cmap='viridis', linewidths=0,
                         rasterized=True)
    fig.colorbar(scatter, ax=ax, label='z (m)', shrink=0.8)
    ax.set_title(f'input: {len(points):,} points (BEV, coloured by height)')
    occupancy_cmap = matplotlib.colormaps['magma'].with_extremes(bad=NO_LATENT_GREY)
    ax = axes[0, 1]
    image = ax.imshow(bev, origin='lower', extent=grids['bev_extent'], cmap=occupancy_cmap, vmin=0, vmax=1)
    near = np.abs(points[:, 2] - bev_z) < resolution / 2
    ax.scatter(points[near, 0], points[near, 1], s=0.3, c='cyan', linewidths=0, rasterized=True)
    fig.colorbar(image, ax=ax, label='P(occupied)', shrink=0.8)
    ax.set_title(f'predicted occupancy at z = {bev_z:g} m (cyan: points within {resolution / 2:g} m){gap_note(bev)}')
    ax = axes[1, 0]
    image = ax.imshow(side, origin='lower', extent=grids['side_extent'], cmap=occupancy_cmap, vmin=0, vmax=1,
                      aspect='auto')
    near = np.abs(points[:, 1] - slice_y) < resolution / 2
    ax.scatter(points[near, 0], points[near, 2], s=1.0, c='cyan', linewidths=0, rasterized=True)
    fig.colorbar(image, ax=ax, label='P(occupied)', shrink=0.8)
    ax.set(xlabel='x (m)', ylabel='z (m)')
    ax.set_title(f'vertical slice at y = {slice_y:g} m (cyan: points within {resolution / 2:g} m){gap_note(side)}')
    ax = axes[1, 1]
    paired = ~np.isnan(query_prob)
    truth, said = sample['query_occupancy'] > 0.5, query_prob > 0.5
    for (name, colour), keep in zip(OUTCOME_COLOURS.items(), (truth & said, ~truth & ~said, ~truth & said,
                                                              truth & ~said)):
        ax.scatter(queries[keep & paired, 0], queries[keep & paired, 1], s=2.5, c=colour, linewidths=0,
                   rasterized=True)
    handles = [Line2D([], [], ls='', marker='o', color=c, label=n) for n, c in OUTCOME_COLOURS.items()]
    if not paired.all():  # VoxelNeXt: a query far from every active BEV cell is not decoded
        ax.scatter(queries[~paired, 0], queries[~paired, 1], s=9, c='black', marker='x', linewidths=0.6,
                   rasterized=True)
        handles.append(Line2D([], [], ls='', marker='x', color='black', label=f'{NO_LATENT}: {(~paired).sum():,}'))
    ax.legend(handles=handles, loc='upper right', fontsize=8)
    ax.set_title(f'queries: label vs mean prediction\n(pairs: accuracy {metrics["occ_acc"]:.3f}, '
                 f'occupied IoU {metrics["occ_iou_occupied"]:.3f})')
    x0, x1, y0, y1 = grids['bev_extent']
    for ax in (axes[0, 0], axes[0, 1], axes[1, 1]):
        ax.set(xlim=(x0, x1), ylim=(y0, y1), aspect='equal', xlabel='x (m)', ylabel='y (m)')
    if several_origins:
        draw_query_origins(axes[0, 2], sample, (x0, x1, y0, y1))
        low, high = sample['ray_origins'][:, :2].min(0) - ZOOM_MARGIN_M, sample['ray_origins'][:, :2].max(0) + ZOOM_MARGIN_M
        draw_query_origins(axes[1, 2], sample, (max(low[0], x0), min(high[0], x1), max(low[1], y0), min(high[1], y1)))
    fig.suptitle(f'ALSO occupancy, sweep {sample["frame_id"]}')
    fig.tight_layout()
    return fig
