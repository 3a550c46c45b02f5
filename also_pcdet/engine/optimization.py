"""Optimizer and learning-rate schedule from the OPTIMIZATION config section."""
import math

import torch


def build_optimizer(model, opt_cfg) -> torch.optim.Optimizer:
    """AdamW (ALSO's default) or Adam / SGD, with LR and WEIGHT_DECAY from the config."""
    params = [p for p in model.parameters() if p.requires_grad]
    name = opt_cfg.OPTIMIZER
    if name == 'adamw':
        return torch.optim.AdamW(params, lr=opt_cfg.LR, weight_decay=opt_cfg.WEIGHT_DECAY)
    if name == 'adam':
        return torch.optim.Adam(params, lr=opt_cfg.LR, weight_decay=opt_cfg.WEIGHT_DECAY)
    if name == 'sgd':
        return torch.optim.SGD(params, lr=opt_cfg.LR, weight_decay=opt_cfg.WEIGHT_DECAY,
                               momentum=opt_cfg.get('MOMENTUM', 0.9))
    raise ValueError(f'OPTIMIZATION.OPTIMIZER {name!r}: expected adamw, adam or sgd')


def learning_rate(opt_cfg, it: int, total_iters: int) -> float:
    """The LR at iteration `it`: `constant` (ALSO's default) or `cosine` decay to zero.
    Stateless, so a resumed run needs only the iteration count."""
    name = opt_cfg.get('LR_SCHEDULE', 'constant')
    if name == 'constant':
        return opt_cfg.LR
    if name == 'cosine':
        return opt_cfg.LR * 0.5 * (1 + math.cos(math.pi * min(it, total_iters) / max(total_iters, 1)))
    raise ValueError(f'OPTIMIZATION.LR_SCHEDULE {name!r}: expected constant or cosine')


def set_learning_rate(optimizer, lr: float):
    for group in optimizer.param_groups:
        group['lr'] = lr
