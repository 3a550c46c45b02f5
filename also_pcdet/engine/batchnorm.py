"""BatchNorm statistics recalibration before a backbone is frozen."""
import torch
from torch import nn


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, forward, batches) -> int:
    """Reset the running mean / variance of every BatchNorm layer of `model` and re-estimate them as the
    plain average over `batches` (train-mode forwards through `forward(batch)`, no gradients, weights
    untouched); the model is left in eval mode. A random backbone's statistics are otherwise those of its
    initialisation (mean 0, variance 1), which no trained network has. Returns the number of layers."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the recalibration batches
    model.train()
    try:
        for batch in batches:
            forward(batch)
    finally:
        for m, momentum in zip(layers, saved):
            m.momentum = momentum
        model.eval()
    return len(layers)
