"""Speed and memory benchmarks: query generation, TFRecord CRC-32C, the data pipeline per worker, and the train step.
Prints tables; asserts nothing. Record results in benchmarks/RESULTS.md.

    python benchmarks/run.py [--quick] [--data DIR]
"""
import argparse
import concurrent.futures
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
import reference_queries  # noqa: E402
import torch  # noqa: E402

from also_pcdet.config import cfg_from_list, cfg_from_yaml_file  # noqa: E402
from also_pcdet.datasets import SweepDataset, queries, sweep_dataset  # noqa: E402
from also_pcdet.datasets.augmentation import RigidAugmentation  # noqa: E402
from also_pcdet.datasets.readers.tfrecord_io import crc32c  # noqa: E402
from also_pcdet.datasets.synthetic import make_sweep, write_kitti_object  # noqa: E402
from also_pcdet.engine.batch import batch_to_device  # noqa: E402
from also_pcdet.engine.optimization import build_optimizer  # noqa: E402
from also_pcdet.models import build_network  # noqa: E402
from also_pcdet.spconv_compat import single_threaded_on_cpu  # noqa: E402

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


def kitti_cfg(data_path):
    """The default KITTI SECOND pretraining config (cfgs/also_pretrain.yaml) reading `data_path`."""
    cfg = cfg_from_yaml_file(REPO / 'cfgs' / 'also_pretrain.yaml')
    return cfg_from_list(['DATA_CONFIG.DATA_PATH', str(data_path)], cfg)


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

    saved = (sweep_dataset.decimate, sweep_dataset.sample_queries, RigidAugmentation.apply)
    sweep_dataset.decimate = wrap('queries', saved[0])
    sweep_dataset.sample_queries = wrap('queries', saved[1])
    RigidAugmentation.apply = wrap('augment', saved[2])
    dataset.source.read = wrap('read', dataset.source.read)
    dataset.crop_mask = wrap('crop', dataset.crop_mask)
    dataset.voxelizer = wrap('voxelize', dataset.voxelizer)
    try:
        yield spent
    finally:
        sweep_dataset.decimate, sweep_dataset.sample_queries, RigidAugmentation.apply = saved


def bench_pipeline(data_path, num_sweeps: int, batch_size: int = 2):
    torch.set_num_threads(1)  # what one loader worker gets
    dataset = SweepDataset(kitti_cfg(data_path).DATA_CONFIG, training=True, seed=0)
    dataset[0]  # builds the worker's voxel generator once
    count = min(num_sweeps, len(dataset))
    with stage_timers(dataset) as spent:
        start = time.perf_counter()
        samples = [dataset[i] for i in range(count)]
        begin = time.perf_counter()
        batches = [dataset.collate_batch(samples[i:i + batch_size]) for i in range(0, count, batch_size)]
        spent['collate'] = time.perf_counter() - begin
        total = time.perf_counter() - start
    spent['other'] = total - sum(spent.values())
    rows = [[name, f'{1e3 * seconds / count:.1f}', f'{100 * seconds / total:.0f} %'] for name, seconds in spent.items()]
    rows.append(['total', f'{1e3 * total / count:.1f}', f'{count / total:.2f} sweeps/s'])
    points = np.mean([len(s['points']) for s in samples])
    table(f'Data pipeline, one worker (1 thread), KITTI SECOND config, {count} synthetic sweeps, '
          f'~{points:,.0f} points in range after decimation', ['stage', 'ms/sweep', 'share'], rows)
    return {'ms_per_sweep': 1e3 * total / count, 'batches': batches}


# ----- train step -----
def step_times(model, optimizer, batch, device, times):
    """One train step; its forward, backward and optimizer seconds are appended to `times` (unless None)."""
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    marks = [time.perf_counter()]
    ret, _, _ = model(batch_to_device(batch, device))
    sync()
    marks.append(time.perf_counter())
    ret['loss'].backward()
    sync()
    marks.append(time.perf_counter())
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    sync()
    marks.append(time.perf_counter())
    if times is not None:
        for key, begin, end in zip(times, marks, marks[1:]):
            times[key].append(end - begin)


def train_steps(data_path, batches, device_name: str) -> dict:
    """Forward / backward / optimizer medians; run in a fresh process so that its peak RSS is the step's.
    On the CPU one thread, as tools/train.py trains (spconv's CPU convolutions race on several)."""
    device = torch.device(device_name)
    cfg = kitti_cfg(data_path)
    dataset = SweepDataset(cfg.DATA_CONFIG, training=True)
    torch.manual_seed(0)
    model = build_network(cfg.MODEL, dataset).to(device).train()
    optimizer = build_optimizer(model, cfg.OPTIMIZATION)
    times = {'forward': [], 'backward': [], 'optimizer': []}
    with single_threaded_on_cpu(device):
        threads = torch.get_num_threads()
        for step, batch in enumerate(batches):
            step_times(model, optimizer, batch, device, times if step else None)  # step 0 is warm-up
    result = {key: 1e3 * float(np.median(values)) for key, values in times.items()}
    result['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == 'cuda':
        result['peak_gpu_mb'] = torch.cuda.max_memory_allocated() / 2 ** 20
        result['device'] = torch.cuda.get_device_name()
    else:
        result['device'] = f'CPU, {threads} thread{"s" if threads > 1 else ""}'
    return result


def bench_train(data_path, batches, batch_size: int):
    devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    rows, results = [], {}
    for name in devices:
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context('spawn')) as pool:
            result = pool.submit(train_steps, str(data_path), batches, name).result()
        results[name] = result
        total = result['forward'] + result['backward'] + result['optimizer']
        gpu = f'{result["peak_gpu_mb"]:,.0f}' if 'peak_gpu_mb' in result else '-'
        rows.append([result['device'], f'{result["forward"]:.0f}', f'{result["backward"]:.0f}',
                     f'{result["optimizer"]:.0f}', f'{total:.0f}', f'{total / batch_size:.0f}',
                     f'{result["peak_rss_mb"]:,.0f}', gpu])
    table(f'Train step, KITTI SECOND config, batch {batch_size}, synthetic sweeps '
          f'(median of {len(batches) - 1} steps after one warm-up)',
          ['device', 'forward ms', 'backward ms', 'optimizer ms', 'step ms', 'ms/sweep', 'peak RSS MB',
           'peak GPU MB'], rows)
    if 'cuda' not in results:
        print('GPU: not available in this session')
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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--quick', action='store_true', help='fewer repeats, sweeps and train steps')
    p.add_argument('--data', default=None, help='KITTI-layout sweeps (default: synthetic ones in a temp dir)')
    args = p.parse_args(argv)
    repeat, num_sweeps, train_batches, batch_size = (5, 6, 2, 2) if args.quick else (30, 16, 4, 2)
    print(f'{time.strftime("%Y-%m-%d %H:%M")}  {os.cpu_count()} CPU cores, load average '
          f'{os.getloadavg()[0]:.1f}, torch {torch.__version__}, numpy {np.__version__}')
    bench_queries(repeat)
    bench_crc32c(repeat)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else Path(tmp)
        if not args.data:
            write_kitti_object(data, num_sweeps=num_sweeps + num_sweeps // 4 + 1, seed=0, val_every=5)
        pipeline = bench_pipeline(data, num_sweeps, batch_size)
        train = bench_train(data, pipeline['batches'][:train_batches], batch_size)
    prep = pipeline['ms_per_sweep']
    print(f'\nBudget: data preparation {prep:.0f} ms/sweep on one core.')
    if 'cuda' in train:
        step = sum(train['cuda'][k] for k in ('forward', 'backward', 'optimizer')) / batch_size
        verdict = 'holds' if prep < step else 'does NOT hold'
        print(f'GPU train step {step:.0f} ms/sweep: "prep on one core < GPU step" {verdict}.')
    else:
        print(f'No GPU here: the budget holds for any GPU whose train step takes more than {prep:.0f} ms per sweep '
              f'(4 workers keep up down to {prep / 4:.0f} ms).')
    print(f'load average at the end: {os.getloadavg()[0]:.1f}')


if __name__ == '__main__':
    main()
