"""Does spconv run with this torch on this device? A submanifold and a strided sparse convolution,
forward and backward, against the same convolutions done densely with torch (float32). Exits non-zero
with a message naming the builds when it does not.

    python benchmarks/spconv_check.py [--device cuda]
"""
import argparse
import importlib.metadata
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def builds() -> str:
    names = {dist.metadata['Name'] for dist in importlib.metadata.distributions()}
    found = [f'{name} {importlib.metadata.version(name)}' for name in sorted(names, key=str.lower)
             if name and name.lower().replace('_', '-').startswith(('spconv', 'cumm'))]
    cuda = torch.version.cuda or 'no CUDA'
    return f"torch {torch.__version__} ({cuda}), {', '.join(found) or 'no spconv/cumm distribution'}"


def dense_reference(features, coords, shape, weight, stride, padding):
    """Scatter the sparse input into a dense grid and convolve it with torch (weight spconv-2 layout
    (out, kD, kH, kW, in))."""
    dense = torch.zeros(1, features.shape[1], *shape, dtype=features.dtype, device=features.device)
    dense[0, :, coords[:, 1], coords[:, 2], coords[:, 3]] = features.t()
    return F.conv3d(dense, weight.permute(0, 4, 1, 2, 3), stride=stride, padding=padding)


def check(device: torch.device):
    import also_pcdet  # noqa: F401  (checks the spconv install; patches the CPU stream lookup)
    import spconv.pytorch as spconv

    torch.manual_seed(0)
    shape = (12, 16, 16)
    cells = torch.randperm(shape[0] * shape[1] * shape[2])[:300]
    coords = torch.stack([torch.zeros_like(cells), cells // 256, cells // 16 % 16, cells % 16], 1).int()
    features = torch.randn(len(coords), 4)
    for name, conv, stride, padding in (
            ('SubMConv3d', spconv.SubMConv3d(4, 8, 3, padding=1, bias=False, indice_key='s'), 1, 1),
            ('SparseConv3d', spconv.SparseConv3d(4, 8, 3, stride=2, padding=1, bias=False), 2, 1)):
        conv = conv.to(device)
        leaf = features.to(device).detach().clone().requires_grad_()
        out = conv(spconv.SparseConvTensor(leaf, coords.to(device), list(shape), 1))
        got = out.dense()
        (got * torch.linspace(-1, 1, got.numel(), device=device).reshape(got.shape)).sum().backward()
        dense_leaf = features.double().requires_grad_()
        expected = dense_reference(dense_leaf, coords.long(), shape, conv.weight.detach().cpu().double(), stride, padding)
        if name == 'SubMConv3d':   # only the input's sites are outputs
            mask = torch.zeros(1, 1, *shape, dtype=torch.bool)
            mask[0, 0, coords[:, 1].long(), coords[:, 2].long(), coords[:, 3].long()] = True
            expected = expected * mask
        else:
            expected = expected * (got.detach().cpu().abs().sum(1, keepdim=True) > 0)  # sites spconv produced
        (expected * torch.linspace(-1, 1, expected.numel(), dtype=torch.float64).reshape(expected.shape)).sum().backward()
        error = (got.detach().cpu().double() - expected.detach()).abs().max().item()
        grad_error = (leaf.grad.cpu().double() - dense_leaf.grad).abs().max().item()
        if not (error < 1e-3 and grad_error < 1e-3):
            raise AssertionError(f'{name} on {device}: forward off by {error:.2e}, input gradient by {grad_error:.2e}')
        print(f'{name} on {device}: forward and backward match torch dense conv3d '
              f'(max error {error:.1e}, gradient {grad_error:.1e})')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--device', default='cuda')
    device = torch.device(p.parse_args(argv).device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        sys.exit(f'spconv check: no CUDA device visible to {builds()}')
    try:
        check(device)
    except Exception as err:  # any failure to import or run is the answer: report it with the builds
        sys.exit(f'spconv check FAILED on {device} with {builds()}:\n  {type(err).__name__}: {err}')
    print(f'spconv check passed on {device}: {builds()}')


if __name__ == '__main__':
    main()
