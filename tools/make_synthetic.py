"""Generate a synthetic lidar dataset (ray-cast street scenes) in a dataset layout.

    python tools/make_synthetic.py --out data/synthetic_kitti --num_sweeps 20 --seed 0 \
        [--layout kitti_object] [--bev_png docs/synthetic_bev.png] [--workers N]

Layouts: kitti_object (training/velodyne, semantic, and the KITTI label_2 / calib / image_2 / planes OpenPCDet reads,
+ ImageSets), kitti_raw (<date>/<drive>_sync/velodyne_points/data),
kitti360 (data_3d_raw/<drive>_sync/velodyne_points/data + window lists), sequences (sequences/NN/velodyne),
nuscenes (samples|sweeps/LIDAR_TOP/*.pcd.bin), nuscenes_infos (the same, scenes driven through, with OpenPCDet's
nuscenes_infos_10sweeps_{train,val}.pkl), once (data/<seq>/lidar_roof/*.bin + ImageSets), waymo_processed
(waymo_processed_data_v0_5_0/<segment>/NNNN.npy + <segment>.pkl), waymo_tfrecord (raw_data/<segment>.tfrecord),
lyft (trainval/lidar/*.bin), custom (points/NNNNNN.npy + ImageSets); the Waymo ones simulate all five lidars with
both returns and write at least two equal segments of up to 20 frames.
"""
import argparse
import inspect
from pathlib import Path

from also_pcdet.datasets.synthetic import CLASS_NAMES, HDL64, make_sweep, write_kitti_object
from also_pcdet.datasets.synthetic.layout_writers import (write_custom, write_kitti360, write_kitti_raw, write_lyft,
                                                          write_nuscenes, write_nuscenes_infos, write_once,
                                                          write_sequences, write_waymo_processed_sweeps,
                                                          write_waymo_tfrecord_sweeps)
from also_pcdet.engine.cli import add_debug_flag, run_main

# layout name -> writer(root, num_sweeps, seed, **options); it gets those of val_every, workers and progress
# that its signature names, and writes with its own sensor (HDL-64, nuScenes' HDL-32E, ONCE's Pandar40,
# Waymo's five lidars).
LAYOUTS = {
    'kitti_object': write_kitti_object,
    'kitti_raw': write_kitti_raw,
    'kitti360': write_kitti360,
    'sequences': write_sequences,
    'nuscenes': write_nuscenes,
    'nuscenes_infos': write_nuscenes_infos,
    'once': write_once,
    'waymo_processed': write_waymo_processed_sweeps,
    'waymo_tfrecord': write_waymo_tfrecord_sweeps,
    'lyft': write_lyft,
    'custom': write_custom,
}

LABEL_COLOURS = ('#a0a0a0', '#d95f02', '#1b9e77', '#7570b3', '#e7298a')


def save_bev_png(points, labels, path, half_extent=60.0):
    """Bird's-eye view of one sweep, coloured by class, with faint 10 m range rings."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    keep = (abs(points[:, 0]) < half_extent) & (abs(points[:, 1]) < half_extent)
    pts, lab = points[keep], labels[keep]
    order = lab.argsort(kind='stable')  # ground first, objects drawn on top
    fig, ax = plt.subplots(figsize=(8, 8))
    ax.set_facecolor('black')
    ax.scatter(pts[order, 0], pts[order, 1], s=0.6, c=[LABEL_COLOURS[i] for i in lab[order]],
               linewidths=0, rasterized=True)
    for r in range(10, int(half_extent * 1.5), 10):
        ax.add_patch(plt.Circle((0, 0), r, fill=False, color='white', alpha=0.15, lw=0.5))
    ax.plot(0, 0, marker='^', color='yellow', ms=6)
    ax.set(xlim=(-half_extent, half_extent), ylim=(-half_extent, half_extent), aspect='equal',
           xlabel='x (m)', ylabel='y (m)', title=f'synthetic HDL-64 sweep: {len(points):,} points')
    handles = [Line2D([], [], ls='', marker='o', color=c, label=n) for n, c in zip(CLASS_NAMES, LABEL_COLOURS)]
    ax.legend(handles=handles, loc='upper right', fontsize=8, facecolor='black', labelcolor='white')
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches='tight')
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_debug_flag(parser)
    parser.add_argument('--out', required=True, help='dataset root to write')
    parser.add_argument('--num_sweeps', type=int, default=20)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--layout', choices=sorted(LAYOUTS), default='kitti_object')
    parser.add_argument('--val_every', type=int, default=5, help='kitti_object: every val_every-th frame goes to val')
    parser.add_argument('--bev_png', help='also save a BEV picture of sweep 0 here')
    parser.add_argument('--workers', type=int, default=1)
    args = parser.parse_args(argv)

    writer = LAYOUTS[args.layout]
    options = {'val_every': args.val_every, 'workers': args.workers, 'progress': True}
    accepted = inspect.signature(writer).parameters
    writer(args.out, args.num_sweeps, args.seed, **{k: v for k, v in options.items() if k in accepted})
    if args.bev_png:
        sweep = make_sweep(args.seed, 0, HDL64)
        save_bev_png(sweep['points'], sweep['labels'], args.bev_png)


if __name__ == '__main__':
    run_main(main)
