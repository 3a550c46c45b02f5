"""Validation: occupancy metrics aggregated over every (query, latent) pair of a loader."""
import torch

from ..models.occupancy_head import metrics_from_counts, occupancy_counts
from ..spconv_compat import single_threaded_on_cpu
from .batch import batch_to_device
from .checkpoint import load_with_model_state, unwrap
from .distributed import all_reduce_sum
from .export import BACKBONE_PREFIXES

SUMS = ('tp', 'fp', 'fn', 'tn', 'intensity_abs_error', 'intensity_pairs', 'loss_sum', 'batches', 'sweeps')


def load_trained(model, ckpt_path, backbone_only: bool = False):
    """Load a checkpoint's `model_state` into `model`; every weight must be there (with `backbone_only`,
    every vfe / backbone weight: an exported `pretrained_backbone.pth` will do)."""
    ckpt = load_with_model_state(ckpt_path)
    missing = model.load_state_dict(ckpt['model_state'], strict=False).missing_keys
    if backbone_only:
        missing = [key for key in missing if key.startswith(BACKBONE_PREFIXES)]
    if missing:
        raise KeyError(f'{ckpt_path} has no weights for {len(missing)} model keys, e.g. {missing[:3]}')
    return model


@torch.no_grad()
def evaluate(model, loader, device) -> dict:
    """Occupancy IoU, accuracy, precision, recall (TP/FP/FN/TN summed over all pairs), intensity L1
    over the pairs with an intensity target, and the mean per-batch loss. Sums are reduced over ranks
    when distributed. The model is left in eval mode; on the CPU it runs on one thread (repeatable results)."""
    model = unwrap(model)
    model.eval()
    sums = dict.fromkeys(SUMS, 0.0)
    for batch in loader:
        with single_threaded_on_cpu(device):
            pred, metric_dict = model(batch_to_device(batch, device))
        for key, value in occupancy_counts(pred['occupancy_logits'], pred['occupancy_target']).items():
            sums[key] += value                                                      # stays on the device
        mask = pred['intensity_mask']
        sums['intensity_abs_error'] += (pred['intensity'][mask] - pred['intensity_target'][mask]).abs().sum()
        sums['intensity_pairs'] += mask.sum()
        sums['loss_sum'] += metric_dict['loss']
        sums['batches'] += 1
        sums['sweeps'] += batch['batch_size']
    sums = {key: float(value) for key, value in sums.items()}                      # one read at the end
    sums = dict(zip(SUMS, all_reduce_sum([sums[key] for key in SUMS])))
    metrics = metrics_from_counts(sums)
    metrics.update(intensity_l1=sums['intensity_abs_error'] / max(sums['intensity_pairs'], 1),
                   loss=sums['loss_sum'] / max(sums['batches'], 1),
                   pairs=int(sum(sums[key] for key in ('tp', 'fp', 'fn', 'tn'))), sweeps=int(sums['sweeps']))
    return metrics


def format_metrics(metrics: dict) -> str:
    """A two-column text table of `evaluate`'s result."""
    width = max(len(key) for key in metrics)
    return '\n'.join(f'{key:<{width}}  {value:.4f}' if isinstance(value, float) else f'{key:<{width}}  {value}'
                     for key, value in metrics.items())
