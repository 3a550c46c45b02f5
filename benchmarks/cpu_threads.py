"""Where a CPU training step spends its time, and whether spconv's CPU convolutions are exact on several threads.

    python benchmarks/cpu_threads.py --data data/synthetic_kitti [--cfg_file cfgs/also_pretrain_demo.yaml]
        [--repeats 20] [--steps 5] [--threads 1 2]

race:    spconv's `scatter_add_cpu` alone against `index_add_`, then the 3D sparse backbone's forward and backward on
         one batch, on 2 threads against 1 thread, with spconv's own kernel and with the one-thread wrapper of
         `also_pcdet.spconv_compat.patch_cpu_scatter_add`, over `--repeats` runs; the dense BEV backbone alone
         (torch ops only) likewise.
profile: the parts of one training step (data, VFE, 3D backbone + BEV map, 2D backbone, head, optimizer),
         forward and backward apart, median over `--steps` steps, for each of `--threads`.
Prints tables; asserts nothing. Record results in benchmarks/RESULTS.md.
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from also_pcdet.config import cfg_from_list, cfg_from_yaml_file  # noqa: E402
from also_pcdet.datasets import SweepDataset  # noqa: E402
from also_pcdet.engine.batch import batch_to_device  # noqa: E402
from also_pcdet.engine.optimization import build_optimizer  # noqa: E402
from also_pcdet.models import build_network  # noqa: E402
from also_pcdet.models.batch_inputs import model_reads_points  # noqa: E402
from also_pcdet.models.column_neighbours import column_neighbours  # noqa: E402
from also_pcdet.spconv_compat import with_threads  # noqa: E402
from spconv.core_cc.csrc.sparse.all import SpconvOps  # noqa: E402
from spconv.pytorch.cppcore import torch_tensor_to_tv  # noqa: E402


def setup(cfg_file: str, data: str, batch_size: int):
    cfg = cfg_from_list(['DATA_CONFIG.DATA_PATH', data], cfg_from_yaml_file(cfg_file))
    dataset = SweepDataset(cfg.DATA_CONFIG, training=True, seed=0)
    torch.manual_seed(0)
    model = build_network(cfg.MODEL, dataset).train()
    batches = [SweepDataset.collate_batch([dataset[(b * batch_size + i) % len(dataset)] for i in range(batch_size)],
                                          with_points=model_reads_points(model)) for b in range(2)]
    return cfg, dataset, model, batches


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))


# ----- race -----
def race_scatter_add(repeats: int):
    """Wrong results of spconv's scatter_add_cpu (unique output rows, as a convolution offset has) per thread count."""
    original = SpconvOps.scatter_add_cpu.original
    gen = torch.Generator().manual_seed(0)
    rows, channels, out_rows = 20000, 64, 30000
    buffer = torch.randn(rows, channels, generator=gen)
    index = torch.randperm(out_rows, generator=gen)[:rows].int()
    base = torch.randn(out_rows, channels, generator=gen)
    expected = base.clone().index_add_(0, index.long(), buffer)
    result = []
    for name, kernel in (('spconv', original), ('one-thread wrapper', SpconvOps.scatter_add_cpu)):
        for threads in (1, 2):
            errors = []
            for _ in range(repeats):
                out = base.clone()
                with_threads(threads, lambda: kernel(torch_tensor_to_tv(out), torch_tensor_to_tv(buffer),
                                                     torch_tensor_to_tv(index)))
                errors.append(rel_error(out, expected))
            result.append((f'scatter_add_cpu ({name})', threads, sum(e > 0 for e in errors), max(errors)))
    return result


def backbone_3d_pass(model, batch):
    """encoded_spconv_tensor features and the 3D backbone's weight gradients for one forward + backward."""
    model.zero_grad(set_to_none=True)
    batch_dict = model.backbone_3d(model.vfe(batch_to_device(batch, 'cpu')))
    features = batch_dict['encoded_spconv_tensor'].features
    (features * torch.linspace(-1, 1, features.shape[1])).sum().backward()
    grads = torch.cat([p.grad.flatten() for p in model.backbone_3d.parameters() if p.grad is not None])
    return features.detach(), grads


def backbone_2d_pass(model, spatial_features):
    model.zero_grad(set_to_none=True)
    leaf = spatial_features.clone().requires_grad_()
    out = model.backbone_2d({'spatial_features': leaf})['spatial_features_2d']
    (out * torch.linspace(-1, 1, out.shape[1]).view(1, -1, 1, 1)).sum().backward()
    grads = torch.cat([p.grad.flatten() for p in model.backbone_2d.parameters()])
    return out.detach(), torch.cat([grads, leaf.grad.flatten()])


def race_network(model, batch, repeats: int):
    """Rows (what, threads, runs that differ from 1 thread by more than 1e-4 relative, max error of outputs /
    gradients) for the 3D backbone with spconv's kernel and with the wrapper, and the dense 2D backbone."""
    patched = SpconvOps.scatter_add_cpu
    rows = []
    for name, kernel in (('3D sparse backbone (spconv kernel)', patched.original),
                         ('3D sparse backbone (one-thread wrapper)', patched)):
        SpconvOps.scatter_add_cpu = staticmethod(kernel)
        try:
            model.train()
            for module in model.modules():   # BatchNorm on fixed statistics: every run sees the same buffers
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()
            reference = with_threads(1, lambda: backbone_3d_pass(model, batch))
            runs = [with_threads(2, lambda: backbone_3d_pass(model, batch)) for _ in range(repeats)]
        finally:
            SpconvOps.scatter_add_cpu = staticmethod(patched)
        errors = [(rel_error(f, reference[0]), rel_error(g, reference[1])) for f, g in runs]
        repeatable = all(torch.equal(f, runs[0][0]) and torch.equal(g, runs[0][1]) for f, g in runs)
        rows.append((name, 2, sum(max(e) > 1e-4 for e in errors), max(e[0] for e in errors),
                     max(e[1] for e in errors), repeatable))
    with torch.no_grad():
        spatial = model.map_to_bev_module(model.backbone_3d(model.vfe(batch_to_device(batch, 'cpu'))))
    spatial = spatial['spatial_features']
    reference = with_threads(1, lambda: backbone_2d_pass(model, spatial))
    runs = [with_threads(2, lambda: backbone_2d_pass(model, spatial)) for _ in range(max(3, repeats // 4))]
    errors = [(rel_error(f, reference[0]), rel_error(g, reference[1])) for f, g in runs]
    repeatable = all(torch.equal(f, runs[0][0]) and torch.equal(g, runs[0][1]) for f, g in runs)
    rows.append(('dense BEV backbone (torch only)', 2, sum(max(e) > 1e-4 for e in errors), max(e[0] for e in errors),
                 max(e[1] for e in errors), repeatable))
    model.train()
    return rows


# ----- profile -----
def step_parts(model, optimizer, batch) -> dict:
    """Seconds per part of one training step; the backward is split at the module boundaries (the VFE's backward
    is in the 3D part's)."""
    times, clock = {}, time.perf_counter
    optimizer.zero_grad(set_to_none=True)
    start = clock()
    batch_dict = model.vfe(batch_to_device(batch, 'cpu'))
    times['VFE'] = clock() - start
    start = clock()
    for module in (model.backbone_3d, model.map_to_bev_module):     # pillars: no 3D backbone, a scatter
        batch_dict = batch_dict if module is None else module(batch_dict)
    times['3D backbone + BEV map fwd'] = clock() - start
    spatial = batch_dict['spatial_features']
    spatial_leaf = spatial.detach().requires_grad_()
    start = clock()
    batch_dict = model.backbone_2d(dict(batch_dict, spatial_features=spatial_leaf))
    times['BEV 2D backbone fwd'] = clock() - start
    bev = batch_dict['spatial_features_2d']
    bev_leaf = bev.detach().requires_grad_()
    head = model.dense_head
    start = clock()
    head(dict(batch_dict, spatial_features_2d=bev_leaf))
    loss = head.get_loss()[0]
    times['head fwd + loss'] = clock() - start
    queries, (height, width) = batch_dict['queries'], bev.shape[2:]
    start = clock()
    column_neighbours(queries[:, 1:3], queries[:, 0], head.point_cloud_range[:2], head.cell_size((height, width)),
                      (height, width), head.model_cfg.RADIUS, head.model_cfg.MAX_NEIGHBOURS)
    times['  of which column search'] = clock() - start
    start = clock()
    loss.backward()
    times['head bwd'] = clock() - start
    start = clock()
    bev.backward(bev_leaf.grad)
    times['BEV 2D backbone bwd'] = clock() - start
    start = clock()
    if spatial.requires_grad:                                       # MeanVFE + scatter alone: no weights
        spatial.backward(spatial_leaf.grad)
    times['3D backbone + BEV map + VFE bwd'] = clock() - start
    start = clock()
    optimizer.step()
    times['optimizer'] = clock() - start
    return times


def profile(cfg, dataset, model, batches, steps: int, thread_counts) -> dict:
    """Median seconds per part for each thread count; the counts take turns step by step, so that a change in
    the machine's load hits them alike."""
    optimizer = build_optimizer(model, cfg.OPTIMIZATION)
    parts = {threads: [] for threads in thread_counts}
    for i in range(steps + 1):                      # the first round warms up
        for threads in thread_counts:
            times = with_threads(threads, lambda: step_parts(model, optimizer, batches[i % len(batches)]))
            if i:
                parts[threads].append(times)
    batch_size, prepare = batches[0]['batch_size'], []
    for i in range(steps):
        start = time.perf_counter()
        with_threads(1, lambda: SweepDataset.collate_batch([dataset[(i * batch_size + j) % len(dataset)]
                                                            for j in range(batch_size)]))
        prepare.append(time.perf_counter() - start)
    result = {}
    for threads, runs in parts.items():
        times = {key: float(np.median([run[key] for run in runs])) for key in runs[0]}
        times['data (one loader worker, 1 thread)'] = float(np.median(prepare))
        times['step (median of sums, without data)'] = float(np.median(
            [sum(v for k, v in run.items() if not k.startswith('  ')) for run in runs]))
        result[threads] = times
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--cfg_file', default=str(REPO / 'cfgs' / 'also_pretrain_demo.yaml'))
    p.add_argument('--data', required=True, help='synthetic KITTI root (tools/make_synthetic.py)')
    p.add_argument('--batch', type=int, default=2)
    p.add_argument('--repeats', type=int, default=20, help='race: runs per setting')
    p.add_argument('--steps', type=int, default=5, help='profile: timed steps per thread count')
    p.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    p.add_argument('--only', choices=['race', 'profile'], default=None)
    args = p.parse_args(argv)
    cfg, dataset, model, batches = setup(args.cfg_file, args.data, args.batch)
    print(f'{args.cfg_file}, batch {args.batch}, {os.cpu_count()} CPUs, torch {torch.__version__}, '
          f'load average {os.getloadavg()[0]:.1f}')
    if args.only in (None, 'race'):
        print(f'\nrace: {args.repeats} runs per row; error = max |x - x_ref| / max |x_ref| against 1 thread')
        for what, threads, wrong, error in race_scatter_add(args.repeats):
            print(f'  {what:<42} {threads} thread(s): {wrong:>3}/{args.repeats} wrong, max error {error:.2e}')
        for what, threads, wrong, out_err, grad_err, repeatable in race_network(model, batches[0], args.repeats):
            print(f'  {what:<42} {threads} threads: {wrong:>3} runs off by > 1e-4; max error outputs {out_err:.2e}, '
                  f'gradients {grad_err:.2e}; bitwise repeatable on 2 threads: {repeatable}')
    if args.only in (None, 'profile'):
        load_before = os.getloadavg()[0]
        results = profile(cfg, dataset, model, batches, args.steps, args.threads)
        print(f'\nprofile: median of {args.steps} steps (ms), thread counts taking turns; load average '
              f'{load_before:.1f} before, {os.getloadavg()[0]:.1f} after; OMP_WAIT_POLICY='
              f'{os.environ.get("OMP_WAIT_POLICY", "(unset)")}')
        print('| part | ' + ' | '.join(f'{t} thread{"s" * (t > 1)} ms' for t in args.threads) + ' | share (1st) |')
        print('| --- |' + ' ---: |' * (len(args.threads) + 1))
        first = results[args.threads[0]]
        step = first['step (median of sums, without data)']
        for key in first:
            share = '' if key.startswith('step') else f'{100 * first[key] / step:.0f} %'
            print(f'| {key} | ' + ' | '.join(f'{results[t][key] * 1e3:,.0f}' for t in args.threads) + f' | {share} |')


if __name__ == '__main__':
    main()
