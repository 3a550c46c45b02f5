"""Eval-mode sparse convolutions with a bias on the CPU (VoxelResBackBone8x: Waymo / nuScenes CenterPoint).

spconv 2.3.8 fuses the bias (and any activation) into its kernel in eval mode and its CPU kernel refuses that
("cpu don't support act and bias"); `spconv_compat.patch_cpu_inference_bias` adds them after the convolution
on CPU tensors, as spconv's own training path does."""
import numpy as np
import pytest
import spconv.pytorch as spconv
import torch
from cumm import tensorview as tv
from easydict import EasyDict
from spconv.pytorch import conv

from also_pcdet.models.backbones import MeanVFE, VoxelResBackBone8x
from also_pcdet.spconv_compat import ensure_spconv
from stock_facts import build_stock, crop, stock_configs, synthetic_batch
from test_backbones import SMALL_GRID, structured_batch


def randomised_res_backbone():
    torch.manual_seed(0)
    model = VoxelResBackBone8x(EasyDict(), 4, SMALL_GRID)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
            elif isinstance(module, conv.SparseConvolution) and module.bias is not None:
                module.bias.uniform_(-0.3, 0.3)
    return model.eval()


def forward(model):
    with torch.no_grad():
        out = model(MeanVFE(EasyDict(), 4)(structured_batch(batch_size=2)))
    return out['encoded_spconv_tensor'], out['multi_scale_3d_features']['x_conv1']


def test_eval_res_backbone_on_cpu_equals_the_unfused_path(one_thread):
    ensure_spconv()
    model = randomised_res_backbone()
    encoded, conv1 = forward(model)
    # reference: the same network with spconv's training-mode convolution (bias added after the
    # convolution), batch norm on its running statistics as in eval mode
    for module in model.modules():
        if isinstance(module, conv.SparseConvolution):
            module.train()
    ref_encoded, ref_conv1 = forward(model)
    assert torch.equal(encoded.indices, ref_encoded.indices)
    torch.testing.assert_close(encoded.features, ref_encoded.features, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv1.features, ref_conv1.features, rtol=1e-5, atol=1e-5)
    assert encoded.features.abs().sum() > 0


def test_unpatched_spconv_rejects_bias_in_eval_on_cpu(monkeypatch, one_thread):
    """The root cause: spconv's own eval path hands the bias to a CPU kernel that asserts CUDA."""
    ensure_spconv()
    monkeypatch.setattr(conv.SparseConvolution, '_conv_forward', conv.SparseConvolution._conv_forward.__wrapped__)
    with pytest.raises(AssertionError, match="cpu don't support act and bias"):
        forward(randomised_res_backbone())


@pytest.mark.parametrize('act', [tv.gemm.Activation.ReLU, tv.gemm.Activation.None_])
def test_fused_activation_on_cpu(act, one_thread):
    ensure_spconv()
    torch.manual_seed(0)
    layer = conv.SparseConvolution(3, 3, 8, 3, bias=True, subm=True, indice_key='a', act_type=act)
    torch.nn.init.uniform_(layer.bias, -1, 1)
    coords = np.unique(np.random.default_rng(0).integers(0, 6, (40, 3)), axis=0)
    indices = torch.from_numpy(np.pad(coords, ((0, 0), (1, 0)))).int()
    x = spconv.SparseConvTensor(torch.randn(len(indices), 3), indices, [6, 6, 6], 1)
    out = layer.eval()(x).features
    plain = spconv.SubMConv3d(3, 8, 3, bias=False, indice_key='a')
    plain.weight.data.copy_(layer.weight.data)
    expected = plain(x).features + layer.bias
    expected = torch.relu(expected) if act == tv.gemm.Activation.ReLU else expected
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize('name', ['nuscenes_models/cbgs_voxel0075_voxelnext.yaml', 'waymo_models/pillarnet.yaml',
                                  'waymo_models/voxelnext2d_ioubranch.yaml'])
def test_eval_forward_on_cpu_of_other_biased_sparse_backbones(name, one_thread):
    """VoxelNeXt's shared conv and PillarRes18's / VoxelNeXt2D's 2D residual convs have a bias too."""
    entry = stock_configs()[name]
    pc_range = crop(entry, 128)
    model = build_stock(entry, POINT_CLOUD_RANGE=pc_range).eval()
    assert any(isinstance(m, conv.SparseConvolution) and m.bias is not None for m in model.modules())
    with torch.no_grad():
        batch = synthetic_batch(entry, pc_range)
        for module in model.module_list:
            batch = module(batch)
    out = batch['spatial_features_2d'] if model.backbone_2d is not None else batch['encoded_spconv_tensor'].features
    assert torch.isfinite(out).all() and out.abs().sum() > 0
