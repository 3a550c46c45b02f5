"""Validation: occupancy metrics aggregated over every (query, latent) pair of a loader."""
import torch

from ..models.occupancy_head import metrics_from_counts, occupancy_counts
from ..spconv_compat import single_threaded_on_cpu
from .batch import batch_to_device
from .checkpoint import CheckpointMismatch, load_with_model_state, state_mismatch, unwrap
from .distributed import all_reduce_sum
from .export import BACKBONE_PREFIXES

SUMS = ('tp', 'fp', 'fn', 'tn', 'intensity_abs_error', 'intensity_pairs', 'loss_sum', 'batches', 'sweeps')
SOURCE_SUMS = ('tp', 'fp', 'fn', 'tn', 'intensity_abs_error', 'intensity_pairs', 'sweeps')  # per source (multi-source)
PAIR_KEYS = ('occupancy_logits', 'occupancy_target', 'intensity', 'intensity_target', 'intensity_mask')


def load_trained(model, ckpt_path, backbone_only: bool = False):
    """Load a checkpoint's `model_state` into `model`; every weight must be there with the model's shape (with
    `backbone_only`, every vfe / backbone weight: an exported `pretrained_backbone.pth` will do), else a
    CheckpointMismatch names the file and the first misfitting keys. Other keys of the file are ignored."""
    ckpt = load_with_model_state(ckpt_path)
    wanted = {key: value for key, value in model.state_dict().items()
              if not backbone_only or key.startswith(BACKBONE_PREFIXES)}
    found = {key: value for key, value in ckpt['model_state'].items() if key in wanted}
    mismatch = state_mismatch(wanted, found)
    if mismatch:
        raise CheckpointMismatch(f'{ckpt_path} does not fit the configured model'
                                 f'{" backbone" if backbone_only else ""}: {mismatch}')
    model.load_state_dict(found, strict=False)
    return model


@torch.no_grad()
def evaluate(model, loader, device) -> dict:
    """Occupancy IoU, accuracy, precision, recall (TP/FP/FN/TN summed over all pairs), intensity L1
    over the pairs with an intensity target, and the mean per-batch loss. Sums are reduced over ranks
    when distributed. The model is left in eval mode; on the CPU it runs on one thread (repeatable results).

    A multi-source loader (its dataset has `source_names`, DATA_CONFIG.SOURCES) adds every metric but the loss
    (a mean over batches, which mix sources) per source, as `<source>/<metric>`, summed over that source's pairs."""
    model = unwrap(model)
    model.eval()
    names = list(getattr(loader.dataset, 'source_names', None) or [])
    sums = dict.fromkeys(SUMS, 0.0)
    by_source = {name: dict.fromkeys(SOURCE_SUMS, 0.0) for name in names}
    for batch in loader:
        batch = batch_to_device(batch, device)
        with single_threaded_on_cpu(device):
            pred, metric_dict = model(batch)
        for key, value in pair_sums(pred).items():
            sums[key] += value                                                      # stays on the device
        sums['loss_sum'] += metric_dict['loss']
        sums['batches'] += 1
        sums['sweeps'] += batch['batch_size']
        if names:
            add_source_sums(by_source, pred, batch)
    keys = [(None, key) for key in SUMS] + [(name, key) for name in names for key in SOURCE_SUMS]
    totals = all_reduce_sum([float(sums[key] if name is None else by_source[name][key]) for name, key in keys])
    reduced = dict(zip(keys, totals))                                               # one read at the end
    sums = {key: reduced[None, key] for key in SUMS}
    metrics = pair_metrics(sums)
    metrics['loss'] = sums['loss_sum'] / max(sums['batches'], 1)
    metrics.update(pairs=metrics.pop('pairs'), sweeps=int(sums['sweeps']))
    for name in names:
        source = pair_metrics({key: reduced[name, key] for key in SOURCE_SUMS})
        metrics.update({f'{name}/{key}': value for key, value in source.items()},
                       **{f'{name}/sweeps': int(reduced[name, 'sweeps'])})
    return metrics


def pair_sums(pred) -> dict:
    """TP/FP/FN/TN, the summed intensity error and the pairs with an intensity target of `pred`'s pairs."""
    mask = pred['intensity_mask']
    sums = occupancy_counts(pred['occupancy_logits'], pred['occupancy_target'])
    sums.update(intensity_abs_error=(pred['intensity'][mask] - pred['intensity_target'][mask]).abs().sum(),
                intensity_pairs=mask.sum())
    return sums


def pair_metrics(sums: dict) -> dict:
    """Occupancy metrics, intensity_l1 and pairs of summed `pair_sums` (floats), and `occ_acc_all_empty`: the
    accuracy of the trivial predictor that answers "empty" for every pair, the floor `occ_acc` must beat."""
    pairs = sum(sums[key] for key in ('tp', 'fp', 'fn', 'tn'))
    metrics = metrics_from_counts(sums)
    metrics.update(occ_acc_all_empty=(sums['tn'] + sums['fp']) / max(pairs, 1),
                   intensity_l1=sums['intensity_abs_error'] / max(sums['intensity_pairs'], 1), pairs=int(pairs))
    return metrics


def add_source_sums(by_source: dict, pred, batch):
    """Add a multi-source batch's `pair_sums` and sweeps to `by_source[name]`, each pair counted for the source
    of its query's sweep (column 0 of `queries` is the sweep's index in the batch)."""
    sweep_of_pair = batch['queries'][pred['query_index'], 0].long()
    for name in set(batch['source_name']):
        sweeps = [b for b, source in enumerate(batch['source_name']) if source == name]
        pairs = torch.isin(sweep_of_pair, torch.tensor(sweeps, device=sweep_of_pair.device))
        for key, value in pair_sums({key: value[pairs] for key, value in pred.items() if key in PAIR_KEYS}).items():
            by_source[name][key] += value
        by_source[name]['sweeps'] += len(sweeps)


def format_metrics(metrics: dict) -> str:
    """A text table of `evaluate`'s result: metric and value, and with per-source metrics a header line and a
    column per source after the overall one ('-': not reported per source)."""
    sources = list(dict.fromkeys(key.split('/', 1)[0] for key in metrics if '/' in key))
    rows = [[key, _cell(value), *(_cell(metrics.get(f'{source}/{key}', '-')) for source in sources)]
            for key, value in metrics.items() if '/' not in key]
    if sources:
        rows.insert(0, ['', 'all', *sources])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return '\n'.join('  '.join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def _cell(value) -> str:
    return f'{value:.4f}' if isinstance(value, float) else str(value)
