"""Speed and memory benchmarks, each figure against a baseline measured in the same process: query
generation against plain NumPy, TFRecord CRC-32C against NumPy, data preparation per sweep per core
against reading the file alone (KITTI, Waymo .npy, Waymo tfrecord, nuScenes), a Waymo Frame's lidar
fields decoded alone against the whole message (camera images included), collating without
`points`, persistent loader workers,
and the training step (KITTI and Waymo configs) with the ALSO head's share of it, the split decoder
against the concatenating one and the per-step metric read against none. Prints tables; asserts
nothing. Record results in benchmarks/RESULTS.md.

    python benchmarks/run.py [--quick | --tiny] [--device cuda] [--batch 8] [--amp] [--row FILE]
"""
import argparse
import concurrent.futures
import functools
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / 'benchmarks')]

import google_crc32c  # noqa: E402
import google_crc32c.python  # noqa: E402
import reference_crc32c  # noqa: E402
import frame_fields  # noqa: E402
import reference_queries  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from also_pcdet.config import cfg_from_list, cfg_from_yaml_file  # noqa: E402
from also_pcdet.datasets import SweepDataset, queries, sweep_dataset  # noqa: E402
from also_pcdet.datasets.augmentation import RigidAugmentation  # noqa: E402
from also_pcdet.datasets.readers import waymo_proto  # noqa: E402
from also_pcdet.datasets.readers.tfrecord_io import crc32c, index_tfrecord, read_record  # noqa: E402
from also_pcdet.datasets.readers.waymo import read_waymo_tfrecord_frame  # noqa: E402
from also_pcdet.datasets.synthetic import make_sweep  # noqa: E402
from also_pcdet.datasets.synthetic.waymo_cameras import with_camera_parts  # noqa: E402
from also_pcdet.engine.batch import batch_to_device  # noqa: E402
from also_pcdet.engine.optimization import build_optimizer  # noqa: E402
from also_pcdet.engine.trainer import Trainer  # noqa: E402
from also_pcdet.models import build_network  # noqa: E402
from also_pcdet.models.batch_inputs import model_reads_points  # noqa: E402
from also_pcdet.models.column_neighbours import column_neighbours  # noqa: E402
from also_pcdet.models.occupancy_head import decode_pairs, read_scalars  # noqa: E402
from also_pcdet.spconv_compat import single_threaded_on_cpu  # noqa: E402
from tools import make_synthetic  # noqa: E402

SWEEP_POINTS = 120_000
NUM_QUERIES = 4096


def median_ms(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def table(title: str, header, rows):
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    print(f'\n{title}')
    for row in [header, ['-' * w for w in widths]] + rows:
        print('  '.join(str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(zip(row, widths))))


# name, synthetic layout (tools/make_synthetic.py), config, target ms per sweep per core, tiny range
LAYOUTS = (
    ('KITTI', 'kitti_object', 'also_pretrain.yaml', 10.0, '[0,-6.4,-3,12.8,6.4,1]'),
    ('Waymo .npy', 'waymo_processed', 'also_pretrain_waymo.yaml', 40.0, '[-6.4,-6.4,-2,6.4,6.4,4]'),
    ('Waymo tfrecord', 'waymo_tfrecord', 'also_pretrain_waymo_tfrecord.yaml', 40.0, '[-6.4,-6.4,-2,6.4,6.4,4]'),
    ('nuScenes', 'nuscenes', 'also_pretrain_nuscenes.yaml', None, '[-12.8,-12.8,-5,12.8,12.8,3]'),
)
STEP_LAYOUTS = ('KITTI', 'Waymo .npy')   # the training step is timed on these configs
HEAD_TARGET = 0.15                       # the head's share of the step


def layout_cfg(name, data_path, tiny=False):
    """The shipped config of layout `name` reading `data_path`; `tiny`: a 12.8 m box and 256 queries (dry runs)."""
    _, _, cfg_file, _, tiny_range = next(layout for layout in LAYOUTS if layout[0] == name)
    cfg = cfg_from_yaml_file(REPO / 'cfgs' / cfg_file)
    extra = ['DATA_CONFIG.POINT_CLOUD_RANGE', tiny_range, 'DATA_CONFIG.QUERIES.NUM_QUERIES', '256'] if tiny else []
    return cfg_from_list(['DATA_CONFIG.DATA_PATH', str(data_path)] + extra, cfg)


def write_layouts(root: Path, num_sweeps: int) -> dict:
    """Synthetic sweeps of every layout under `root` (enough for `num_sweeps` train sweeps each)."""
    paths = {}
    for name, layout, *_ in LAYOUTS:
        paths[name] = root / layout
        make_synthetic.main(['--out', str(paths[name]), '--layout', layout, '--seed', '0',
                             '--num_sweeps', str(num_sweeps + num_sweeps // 3 + 2)])
    return paths


def load() -> str:
    return f'{os.getloadavg()[0]:.1f}'


# ----- query generation -----
def bench_queries(repeat: int):
    sweep = make_sweep(0, 0)['points']
    points = sweep[np.random.default_rng(0).choice(len(sweep), SWEEP_POINTS, replace=len(sweep) < SWEEP_POINTS)]
    xyz, intensity, origin = points[:, :3], points[:, 3], np.zeros(3)

    def run(module):
        rng = np.random.default_rng(7)
        kept = module.decimate(xyz, 0.05, rng)
        return kept, module.sample_queries(xyz[kept], intensity[kept], origin, NUM_QUERIES, 0.1, rng)

    kept, ours = run(queries)
    ref_kept, ref = run(reference_queries)
    same = np.array_equal(kept, ref_kept) and all(np.array_equal(ours[k], ref[k]) for k in ref)
    rng = np.random.default_rng(7)
    hits, hit_intensity = xyz[kept], intensity[kept]
    rows, totals = [], []
    for name, module in (('also_pcdet queries.py', queries), ('reference_queries.py', reference_queries)):
        decimation = median_ms(lambda: module.decimate(xyz, 0.05, rng), repeat)
        sampling = median_ms(lambda: module.sample_queries(hits, hit_intensity, origin, NUM_QUERIES, 0.1, rng), repeat)
        total = median_ms(lambda: run(module), repeat)
        totals.append(total)
        rows.append([name, f'{decimation:.1f}', f'{sampling:.2f}', f'{total:.1f}', f'{NUM_QUERIES / total * 1e3:,.0f}'])
    ratio = totals[1] / totals[0]
    table(f'Query generation: {SWEEP_POINTS:,}-point sweep -> {len(kept):,} after 0.05 m decimation -> '
          f'{NUM_QUERIES} queries (median of {repeat}; outputs identical: {"yes" if same else "NO"})',
          ['implementation', 'decimate ms', 'sample ms', 'ms/sweep', 'queries/s'], rows)
    print(f'speed-up over the reference: {ratio:.1f}x')


# ----- data pipeline -----
@contextmanager
def stage_timers(dataset):
    """Time the stages `SweepDataset.__getitem__` calls by wrapping them where prepare() looks them up
    (the module functions are restored on exit; `dataset` keeps its wrappers)."""
    spent = {}

    def wrap(name, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - start
        return timed

    saved = (sweep_dataset.rays_reaching_range, sweep_dataset.decimate, sweep_dataset.sample_queries_in_range,
             RigidAugmentation.apply)
    sweep_dataset.rays_reaching_range = wrap('queries', saved[0])
    sweep_dataset.decimate = wrap('queries', saved[1])
    sweep_dataset.sample_queries_in_range = wrap('queries', saved[2])
    RigidAugmentation.apply = wrap('augment', saved[3])
    dataset.source.read = wrap('read', dataset.source.read)
    dataset.crop_mask = wrap('crop', dataset.crop_mask)
    dataset.voxelizer = wrap('voxelize', dataset.voxelizer)
    try:
        yield spent
    finally:
        (sweep_dataset.rays_reaching_range, sweep_dataset.decimate, sweep_dataset.sample_queries_in_range,
         RigidAugmentation.apply) = saved


def bench_pipeline(cfg, num_sweeps: int, batch_size: int = 2):
    torch.set_num_threads(1)  # what one loader worker gets
    dataset = SweepDataset(cfg.DATA_CONFIG, training=True, seed=0)
    dataset[0]  # builds the worker's voxel generator once
    count = min(num_sweeps, len(dataset))
    with stage_timers(dataset) as spent:
        start = time.perf_counter()
        samples = [dataset[i] for i in range(count)]
        begin = time.perf_counter()
        for i in range(0, count, batch_size):
            dataset.collate_batch(samples[i:i + batch_size], with_points=False)
        spent['collate'] = time.perf_counter() - begin
        total = time.perf_counter() - start
    spent['other'] = total - sum(spent.values())
    rows = [[name, f'{1e3 * seconds / count:.1f}', f'{100 * seconds / total:.0f} %'] for name, seconds in spent.items()]
    rows.append(['total', f'{1e3 * total / count:.1f}', f'{count / total:.2f} sweeps/s'])
    points = np.mean([len(s['points']) for s in samples])
    table(f'Data pipeline, one worker (1 thread), KITTI SECOND config, {count} synthetic sweeps, '
          f'~{points:,.0f} points in range after decimation', ['stage', 'ms/sweep', 'share'], rows)
    return {'ms_per_sweep': 1e3 * total / count, 'samples': samples}


def bench_prep_layouts(paths: dict, num_sweeps: int, tiny: bool) -> dict:
    """Per sweep on one core: reading the file alone, and the whole preparation (read, augment, crop,
    decimate, queries, voxelize) that a loader worker does; medians over the sweeps."""
    torch.set_num_threads(1)
    rows, results = [], {}
    for name, _, _, target, _ in LAYOUTS:
        dataset = SweepDataset(layout_cfg(name, paths[name], tiny).DATA_CONFIG, training=True, seed=0)
        dataset[0]  # builds the worker's voxel generator once
        read, prep, points = [], [], []
        for i in range(min(num_sweeps, len(dataset))):
            start = time.perf_counter()
            raw, _ = dataset.source.read(dataset.sample_ids[i])
            read.append(time.perf_counter() - start)
            start = time.perf_counter()
            sample = dataset[i]
            prep.append(time.perf_counter() - start)
            points.append((len(raw), len(sample['points'])))
        read_ms, prep_ms = 1e3 * float(np.median(read)), 1e3 * float(np.median(prep))
        verdict = '-' if target is None else (f'<= {target:.0f}: met' if prep_ms <= target else f'<= {target:.0f}: NOT met')
        results[name] = {'read_ms': read_ms, 'prep_ms': prep_ms, 'target': target, 'load': load()}
        raw_points, kept = np.mean(points, axis=0)
        rows.append([name, f'{len(prep)}', f'{raw_points:,.0f}', f'{kept:,.0f}', f'{read_ms:.1f}', f'{prep_ms:.1f}',
                     f'{prep_ms / read_ms:.1f}x', verdict, load()])
    table('Data preparation per sweep per core (1 thread; medians over the train sweeps; nuScenes: key frames)',
          ['layout', 'sweeps', 'raw points', 'points in range', 'read ms', 'prepare ms', 'prepare / read',
           'target ms', 'load'], rows)
    return results


def bench_collate_points(samples: list, batch_size: int, repeat: int, device) -> dict:
    """Collating and moving a batch to the device with and without the `points` array."""
    group = (samples * batch_size)[:batch_size]
    rows, out = [], {}
    for with_points in (True, False):
        collate = median_ms(lambda: SweepDataset.collate_batch(group, with_points=with_points), repeat)
        batch = SweepDataset.collate_batch(group, with_points=with_points)
        sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
        move = median_ms(lambda: (batch_to_device(batch, device), sync()), repeat)
        megabytes = sum(v.nbytes for v in batch.values() if isinstance(v, np.ndarray)) / 2 ** 20
        out[with_points] = collate + move
        rows.append(['with points' if with_points else 'without (MeanVFE)', f'{collate:.2f}', f'{move:.2f}',
                     f'{megabytes:.1f}'])
    table(f'Collate + copy to {device.type}, batch {batch_size} (median of {repeat})',
          ['batch', 'collate ms', 'to device ms', 'MB'], rows)
    return out


def bench_persistent_workers(cfg, batch_size: int, workers: int = 2) -> dict:
    """Seconds for the second epoch of a small loader: workers started again vs kept (persistent)."""
    dataset = SweepDataset(cfg.DATA_CONFIG, training=True, seed=0)
    dataset.sample_ids = dataset.sample_ids[:2 * batch_size]
    out = {}
    for persistent in (False, True):
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                             collate_fn=functools.partial(SweepDataset.collate_batch, with_points=False),
                                             persistent_workers=persistent)
        for epoch in range(2):
            dataset.set_epoch(epoch)
            start = time.perf_counter()
            for _ in loader:
                pass
            out[persistent] = time.perf_counter() - start
        del loader
    table(f'Second epoch of {len(dataset)} sweeps, batch {batch_size}, {workers} workers',
          ['workers', 'epoch s'], [['restarted each epoch', f'{out[False]:.2f}'], ['persistent', f'{out[True]:.2f}']])
    return out


def bench_frame_decode(paths: dict, repeat: int) -> dict:
    """A Waymo Frame record with its five camera images and laser labels (synthetic, real sizes): parsing the
    whole message, as the reader does, against walking it on the wire and parsing only the lidar fields
    (benchmarks/frame_fields.py), and the reader's whole read of the frame (decompression, geometry)."""
    source = SweepDataset(layout_cfg('Waymo tfrecord', paths['Waymo tfrecord']).DATA_CONFIG, training=True).source
    path = source.path(0)
    record = with_camera_parts(read_record(path, index_tfrecord(path)[0]), np.random.default_rng(0))
    whole = median_ms(lambda: waymo_proto.Frame.FromString(record), repeat)
    lidar = median_ms(lambda: waymo_proto.Frame.FromString(frame_fields.lidar_fields(record)), repeat)
    scan = median_ms(lambda: frame_fields.lidar_fields(record), repeat)
    kept = len(frame_fields.lidar_fields(record))
    read = median_ms(lambda: read_waymo_tfrecord_frame(path, index_tfrecord(path)[0]), repeat)
    table(f'Waymo Frame record of {len(record) / 2 ** 20:.1f} MB ({kept / 2 ** 20:.1f} MB lidar fields, '
          f'5 camera images, 60 laser labels; {"official" if waymo_proto.USING_OFFICIAL_PROTOS else "subset"} '
          f'Frame class; median of {repeat})', ['decode', 'ms'],
          [['whole message', f'{whole:.2f}'], ['lidar fields only (wire walk + parse)', f'{lidar:.2f}'],
           ['  of which the wire walk', f'{scan:.2f}'],
           ['the reader, whole frame (5 lidars x 2 returns: zlib, range images to points)', f'{read:.1f}']])
    return {'whole_ms': whole, 'lidar_ms': lidar, 'read_ms': read}


# ----- train step -----
def naive_decode(decoder, cell_latents, pair_cell, relative):
    """The decoder's definition: each (query, latent) pair concatenated and decoded on its own."""
    return decoder(torch.cat([cell_latents[pair_cell], relative], dim=1))


def timed(fn, device, repeat: int) -> float:
    """Median seconds of `fn` after one warm-up call, synchronising the GPU around each call."""
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    fn()
    times = []
    for _ in range(repeat):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def train_steps(name: str, data_path: str, device_name: str, batch_size: int, steps: int, amp: bool,
                tiny: bool) -> dict:
    """The training step as Trainer.step runs it, and inside the same process its parts: the ALSO head
    alone (latent projection, column search, decoder, loss; forward + backward from the BEV map), the
    decoder split vs concatenated, and the step with its metrics read every step. Run in a fresh process
    so that its peak memory is the step's. On the CPU one thread, as tools/train.py trains."""
    device = torch.device(device_name)
    cfg = layout_cfg(name, data_path, tiny)
    dataset = SweepDataset(cfg.DATA_CONFIG, training=True, seed=0)
    torch.manual_seed(0)
    model = build_network(cfg.MODEL, dataset).to(device).train()
    samples = [dataset[i % len(dataset)] for i in range(batch_size)]
    batch = SweepDataset.collate_batch(samples, with_points=model_reads_points(model))
    trainer = Trainer(model, build_optimizer(model, cfg.OPTIMIZATION), None, cfg.OPTIMIZATION, ckpt_dir=None,
                      device=device, amp=amp)
    trainer.total_iters = 10 ** 6
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = False
        torch.cuda.reset_peak_memory_stats()
    autocast = functools.partial(torch.autocast, device_type=device.type, dtype=torch.float16, enabled=amp)
    head = model.dense_head
    with single_threaded_on_cpu(device):
        threads = torch.get_num_threads()
        step = timed(lambda: trainer.step(batch_to_device(batch, device)), device, steps)
        step_read = timed(lambda: read_scalars(trainer.step(batch_to_device(batch, device))), device, steps)
        with torch.no_grad(), autocast():
            encoded = model.encode(batch_to_device(batch, device))
        features = encoded['spatial_features_2d'].detach().requires_grad_()

        def head_pass():
            with autocast():
                head(dict(encoded, spatial_features_2d=features))
                loss = head.get_loss()[0]
            loss.backward()
        head_s = timed(head_pass, device, steps)

        with autocast():
            latents = head.latent_proj(features).detach()
        _, channels, height, width = latents.shape
        queries = encoded['queries']
        q_index, cell, centres = column_neighbours(
            queries[:, 1:3], queries[:, 0], head.point_cloud_range[:2], head.cell_size((height, width)),
            (height, width), head.model_cfg.RADIUS, head.model_cfg.MAX_NEIGHBOURS)
        flat = latents.permute(0, 2, 3, 1).reshape(-1, channels).requires_grad_()
        relative = queries[q_index, 1:4] - F.pad(centres, (0, 1))

        def decoder_pass(decode):
            def run():
                with autocast():
                    out = decode(head.decoder, flat, cell, relative)
                out.float().sum().backward()
            return run
        decoder = {'concatenated': timed(decoder_pass(naive_decode), device, steps)}
        for cells in ('all', 'referenced'):
            decoder[cells] = timed(decoder_pass(functools.partial(decode_pairs, cells=cells)), device, steps)
    result = {'name': name, 'batch': batch_size, 'amp': amp, 'step_ms': 1e3 * step,
              'step_read_ms': 1e3 * step_read, 'head_ms': 1e3 * head_s,
              'decoder_ms': {key: 1e3 * value for key, value in decoder.items()},
              'pairs': len(cell), 'cells': len(flat), 'points_collated': 'points' in batch,
              'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == 'cuda':
        result['peak_gpu_mb'] = torch.cuda.max_memory_allocated() / 2 ** 20
        result['device'] = torch.cuda.get_device_name()
    else:
        result['device'] = f'CPU, {threads} thread{"s" if threads > 1 else ""}'
    return result


def bench_train(paths: dict, device_name: str, batch_size: int, steps: int, amp: bool, tiny: bool) -> list:
    results = []
    for name in STEP_LAYOUTS[:1] if tiny else STEP_LAYOUTS:   # a dry run checks the code path once
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context('spawn')) as pool:
            result = pool.submit(train_steps, name, str(paths[name]), device_name, batch_size, steps, amp, tiny).result()
        result['load'] = load()
        results.append(result)
    rows = []
    for r in results:
        share = r['head_ms'] / r['step_ms']
        dec = r['decoder_ms']
        best = min(('all', 'referenced'), key=dec.get)
        auto = 'all' if r['pairs'] >= r['cells'] and 'peak_gpu_mb' in r else 'referenced'
        memory = f'{r["peak_gpu_mb"]:,.0f} GPU' if 'peak_gpu_mb' in r else f'{r["peak_rss_mb"]:,.0f} RSS'
        rows.append([r['name'], r['device'], 'fp16 amp' if r['amp'] else 'fp32', f'{r["step_ms"]:.0f}',
                     f'{1e3 * r["batch"] / r["step_ms"]:.2f}', f'{r["head_ms"]:.0f}',
                     f'{100 * share:.1f} % ({"met" if share <= HEAD_TARGET else "NOT met"})',
                     f'{dec["concatenated"]:.1f} / {dec["all"]:.1f} / {dec["referenced"]:.1f}',
                     f'{r["pairs"]:,} / {r["cells"]:,} -> {auto}{"" if auto == best else " (not the faster)"}',
                     f'{r["step_read_ms"] / r["step_ms"]:.3f}x', memory, r['load']])
    table(f'Train step (Trainer.step, points collated: {"yes" if results[0]["points_collated"] else "no"}), batch '
          f'{batch_size}, median of {steps} after one warm-up; head = projection + column search + decoder + loss, '
          f'forward + backward; decoder fwd+bwd: concatenated / split, all cells / split, referenced cells',
          ['config', 'device', 'precision', 'step ms', 'samples/s', 'head ms', f'head share (<= {HEAD_TARGET:.0%})',
           'decoder ms', 'pairs / cells -> auto', 'read metrics every step', 'peak MB', 'load'], rows)
    return results


def bench_crc32c(repeat: int):
    """TFRecord CRC-32C: the reader's google-crc32c call against the NumPy implementation it replaced and
    google-crc32c's own pure-Python fallback, on record sizes from a header to a Waymo frame with images."""
    rows = []
    for size in (8, 64 << 10, 1 << 20, 8 << 20):
        data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
        expected = crc32c(data)
        assert reference_crc32c.crc32c(data) == expected  # same checksum, or the timing is meaningless
        times = {'library': median_ms(lambda: crc32c(data), repeat),
                 'numpy': median_ms(lambda: reference_crc32c.crc32c(data), max(1, repeat // 5))}
        if size <= 1 << 20:
            assert google_crc32c.python.value(data) == expected
            times['python'] = median_ms(lambda: google_crc32c.python.value(data), 1)
        rows.append([f'{size:,}', f'{times["library"]:.3f}', f'{times["numpy"]:.2f}',
                     f'{times["python"]:.1f}' if 'python' in times else '-',
                     f'{size / 1e6 / (times["library"] / 1e3):,.0f}' if times['library'] else '-',
                     f'{times["numpy"] / max(times["library"], 1e-6):,.0f}x'])
    table(f'CRC-32C (google-crc32c implementation: {google_crc32c.implementation})',
          ['bytes', 'library ms', 'NumPy ms', 'pure Python ms', 'library MB/s', 'NumPy / library'], rows)


def results_row(results: list, when: str) -> str:
    """Markdown rows (one per config) for the GPU table of benchmarks/RESULTS.md."""
    lines = []
    for r in results:
        memory = f'{r["peak_gpu_mb"]:,.0f}' if 'peak_gpu_mb' in r else f'{r["peak_rss_mb"]:,.0f} (RSS)'
        lines.append(f'| {when} | {r["device"]} | {r["name"]} | {r["batch"]} | {"amp" if r["amp"] else "fp32"} | '
                     f'{r["step_ms"]:.0f} | {1e3 * r["batch"] / r["step_ms"]:.1f} | '
                     f'{100 * r["head_ms"] / r["step_ms"]:.1f} % | {memory} | {r["load"]} |')
    return '\n'.join(lines) + '\n'


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument('--quick', action='store_true', help='fewer repeats, sweeps and train steps')
    size.add_argument('--tiny', action='store_true', help='dry run: 12.8 m boxes, 256 queries, 2 sweeps, 1 step')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu', help='train step device')
    p.add_argument('--batch', type=int, default=None, help='train step batch (default: 8 on a GPU, 1 on the CPU)')
    p.add_argument('--amp', action='store_true', help='train step in float16 autocast (CUDA)')
    p.add_argument('--only_step', action='store_true', help='time only the train step (GPU check, second run)')
    p.add_argument('--row', default=None, help='append the train step rows (markdown) to this file')
    args = p.parse_args(argv)
    repeat, num_sweeps, steps = (2, 2, 1) if args.tiny else (5, 4, 2) if args.quick else (20, 12, 3)
    device = torch.device(args.device)
    batch_size = args.batch or (8 if device.type == 'cuda' else 1)
    if device.type == 'cuda' and not args.tiny:
        steps = max(steps, 5)
    when = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    print(f'{when}  {os.cpu_count()} CPU cores, load average {load()}, torch {torch.__version__}, '
          f'numpy {np.__version__}, train step on {device}')
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_layouts(Path(tmp), num_sweeps)
        if not args.only_step:
            bench_queries(repeat)
            bench_crc32c(repeat)
            kitti = layout_cfg('KITTI', paths['KITTI'], args.tiny)
            pipeline = bench_pipeline(kitti, num_sweeps)
            bench_prep_layouts(paths, num_sweeps, args.tiny)
            bench_frame_decode(paths, repeat)
            bench_collate_points(pipeline['samples'], batch_size, repeat, device)
            bench_persistent_workers(kitti, batch_size=2)
        results = bench_train(paths, args.device, batch_size, steps, args.amp, args.tiny)
    if args.row:
        with open(args.row, 'a') as out:
            out.write(results_row(results, when))
        print(f'rows appended to {args.row}')
    print(f'load average at the end: {load()}')


if __name__ == '__main__':
    main()
