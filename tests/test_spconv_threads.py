"""spconv's CPU convolutions on two torch threads: `scatter_add_cpu` (patched by `import also_pcdet`) adds each row
where `index_add_` does, and a submanifold convolution's forward and backward equal the one-thread ones up to the
order of float sums."""
import torch

import also_pcdet  # noqa: F401  (applies the patches)
from also_pcdet.spconv_compat import patch_cpu_scatter_add, with_threads
from spconv.core_cc.csrc.sparse.all import SpconvOps
from spconv.pytorch.cppcore import torch_tensor_to_tv


def test_scatter_add_is_exact_on_two_threads():
    patch_cpu_scatter_add()                                   # idempotent: still the one wrapper
    assert SpconvOps.scatter_add_cpu.single_threaded and not getattr(SpconvOps.scatter_add_cpu.original,
                                                                     'single_threaded', False)
    gen = torch.Generator().manual_seed(0)
    buffer, index = torch.randn(20000, 32, generator=gen), torch.randperm(30000, generator=gen)[:20000].int()
    base = torch.randn(30000, 32, generator=gen)
    expected = base.clone().index_add_(0, index.long(), buffer)
    for _ in range(20):
        out = base.clone()
        with_threads(2, lambda: SpconvOps.scatter_add_cpu(torch_tensor_to_tv(out), torch_tensor_to_tv(buffer),
                                                          torch_tensor_to_tv(index)))
        assert torch.equal(out, expected)


def test_sparse_convolution_on_two_threads_equals_one_thread():
    import spconv.pytorch as spconv
    gen = torch.Generator().manual_seed(0)
    coords = torch.unique(torch.randint(0, 40, (6000, 3), generator=gen), dim=0)
    indices = torch.cat([torch.zeros(len(coords), 1, dtype=torch.long), coords], 1).int()
    features = torch.randn(len(coords), 16, generator=gen)
    conv = spconv.SubMConv3d(16, 32, 3, bias=False, indice_key='subm')

    def run():
        conv.zero_grad()
        leaf = features.clone().requires_grad_()
        out = conv(spconv.SparseConvTensor(leaf, indices, [40, 40, 40], 1)).features
        (out * torch.linspace(-1, 1, 32)).sum().backward()
        return out.detach(), leaf.grad, conv.weight.grad.clone()

    reference = with_threads(1, run)
    for _ in range(5):
        for got, want in zip(with_threads(2, run), reference):   # summation order only; the race was ~10 % off
            assert (got - want).abs().max() <= 1e-5 * want.abs().max()
