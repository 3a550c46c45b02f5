"""spconv checks at import time, and the patches that let spconv's CPU path run backward and inference."""
import functools
import importlib.metadata
import logging
import re
import sys
import warnings
from contextlib import contextmanager

import torch

INSTALL_HINT = ("install exactly one spconv build through an also-pcdet extra: "
                "`pip install also-pcdet[cpu]` (CPU), `also-pcdet[cu121]` or `also-pcdet[cu126]` (CUDA)")


def spconv_distribution_names(names):
    """The spconv builds among distribution `names` (`spconv`, `spconv-cuXXX`), normalized, sorted."""
    normalized = {re.sub(r'[-_.]+', '-', name).lower() for name in names if name}
    return sorted(n for n in normalized if n == 'spconv' or n.startswith('spconv-cu'))


def check_spconv_distributions(names):
    """Raise ImportError when more than one spconv build is among `names`; return the builds found."""
    builds = spconv_distribution_names(names)
    if len(builds) > 1:
        raise ImportError(
            f"several spconv builds are installed: {', '.join(builds)}. They install into the same "
            f"`spconv` folder and overwrite each other (uninstalling one breaks the other). Uninstall "
            f"all of them (`pip uninstall {' '.join(builds)}`), then {INSTALL_HINT}.")
    return builds


def _cpu_stream():
    """Stand-in for spconv's `get_current_stream` without CUDA: the CPU path ignores the stream."""
    return 0


def patch_cpu_stream():
    """Without CUDA, make every loaded spconv module's `get_current_stream` return 0 (idempotent).

    spconv's version calls `torch.cuda.current_stream()`, which fails in backward on a CPU-only torch.
    Modules imported later take the patched name from `spconv.pytorch.cppcore`."""
    if torch.cuda.is_available():
        return
    import spconv.pytorch  # noqa: F401  (loads cppcore, ops, hash, ...)

    for name, module in list(sys.modules.items()):
        if (name == 'spconv' or name.startswith('spconv.')) and hasattr(module, 'get_current_stream'):
            if module.get_current_stream is not _cpu_stream:
                module.get_current_stream = _cpu_stream


def patch_cpu_inference_bias():
    """Let sparse convolutions with a bias (or a fused activation) run in eval mode on CPU tensors (idempotent).

    In eval mode spconv 2.x hands the bias and activation to its convolution kernel to fuse them; its CPU
    kernels refuse that (`AssertionError: cpu don't support act and bias` in `spconv.pytorch.ops`), so an
    eval-mode VoxelResBackBone8x (whose residual convs have a bias) cannot run on the CPU. For CPU tensors in
    eval mode the patched `SparseConvolution._conv_forward` runs the convolution without them and then adds the
    bias and applies the activation, as spconv's training path does. CUDA tensors, training mode and quantized
    or `add_input` calls go to spconv's own code unchanged. Patched on the class, so OpenPCDet's modules get it too."""
    from cumm import tensorview as tv
    from spconv.pytorch import conv

    original = conv.SparseConvolution._conv_forward
    if getattr(original, 'cpu_inference_bias', False):
        return

    @functools.wraps(original)
    def conv_forward(self, training, input, weight, bias, add_input=None, *args,
                     act_type=tv.gemm.Activation.None_, act_alpha=0.0, act_beta=0.0, **kwargs):
        fused = bias is not None or act_type != tv.gemm.Activation.None_
        if (training or not fused or input.features.is_cuda or add_input is not None or input.is_quantized
                or args or kwargs.get('channel_scale') is not None or kwargs.get('output_scale') is not None):
            return original(self, training, input, weight, bias, add_input, *args, act_type=act_type,
                            act_alpha=act_alpha, act_beta=act_beta, **kwargs)
        out = original(self, training, input, weight, None, None, **kwargs)
        features = out.features if bias is None else out.features + bias
        return out.replace_feature(conv._apply_act(features, act_type, act_alpha, act_beta))

    conv_forward.cpu_inference_bias = True
    conv.SparseConvolution._conv_forward = conv_forward


def patch_cpu_scatter_add():
    """Make spconv's CPU `scatter_add_cpu` exact with several torch threads (idempotent).

    spconv 2.3.8's kernel (csrc/sparse/gather.py, used by every CPU sparse convolution forward and backward) shares
    its row pointers between the OpenMP threads it starts, so with two threads rows get added to the wrong output
    row: outputs differ by up to the features' scale from run to run (benchmarks/cpu_threads.py). Its OpenMP team
    follows torch's thread count, so the wrapper runs it on one thread; the matrix products around it, and every
    other torch op, keep all threads."""
    from spconv.core_cc.csrc.sparse.all import SpconvOps

    original = SpconvOps.scatter_add_cpu
    if getattr(original, 'single_threaded', False):
        return

    def scatter_add_cpu(out, buffer, indices):
        if torch.get_num_threads() == 1:   # the usual case: no thread count to change and restore
            return original(out, buffer, indices)
        with torch_threads(1):
            return original(out, buffer, indices)

    scatter_add_cpu.single_threaded, scatter_add_cpu.original = True, original
    SpconvOps.scatter_add_cpu = staticmethod(scatter_add_cpu)


def ensure_spconv():
    """Check that exactly one spconv build is installed and importable; patch its CPU backward and inference."""
    check_spconv_distributions(d.metadata['Name'] for d in importlib.metadata.distributions())
    try:
        import spconv.pytorch  # noqa: F401
    except ModuleNotFoundError as err:
        if err.name not in ('spconv', 'spconv.pytorch'):
            raise
        raise ImportError(f"also-pcdet needs spconv 2.x, which is not installed: {INSTALL_HINT}.") from err
    patch_cpu_stream()
    patch_cpu_inference_bias()
    patch_cpu_scatter_add()
    quiet_spconv_noise()


def quiet_spconv_noise():
    """Silence two messages spconv 2.3.8 triggers on every run that say nothing about the user's run: torch's
    deprecation of list indices (spconv/pytorch/core.py) and torch.fx's note on `is_fx_tracing`."""
    warnings.filterwarnings('ignore', message='Using a non-tuple sequence for multidimensional indexing',
                            category=UserWarning, module='spconv')
    logging.getLogger('torch.fx._symbolic_trace').setLevel(logging.ERROR)


@contextmanager
def single_threaded_on_cpu(device):
    """Run the enclosed code with one torch thread when `device` is the CPU: results then do not depend on the
    machine's thread count (several threads sum in another order: ~1e-7 relative differences).

    Several threads are exact since `patch_cpu_scatter_add` (spconv's own race, traveller59/spconv#679);
    tools/train.py still uses one unless OMP_NUM_THREADS asks for more (two were slower on a busy 2-core machine)."""
    if torch.device(device).type != 'cpu':
        yield
        return
    with torch_threads(1):
        yield


@contextmanager
def torch_threads(threads: int):
    """Run the enclosed code with `threads` torch threads; the count before is restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def with_threads(threads: int, fn):
    """`fn()` run with `threads` torch threads."""
    with torch_threads(threads):
        return fn()
