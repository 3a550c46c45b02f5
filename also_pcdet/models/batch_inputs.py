"""Which batch_dict inputs a built model reads, so that the loader collates and copies only those."""
import inspect
import re

from torch import nn

_READS_POINTS = re.compile(r"""\[\s*['"]points['"]\s*\]|\.get\(\s*['"]points['"]""")


def module_reads_points(module: nn.Module) -> bool:
    """A module's `READS_POINTS` class attribute when its class declares one; otherwise whether the
    source of its class (and of its bases below nn.Module) reads batch_dict['points'], which covers
    OpenPCDet's own modules (they declare nothing); True when no source can be found."""
    declared = getattr(type(module), 'READS_POINTS', None)
    if declared is not None:
        return bool(declared)
    for cls in type(module).__mro__:
        if cls in (nn.Module, object):
            continue
        try:
            if _READS_POINTS.search(inspect.getsource(cls)):
                return True
        except (OSError, TypeError):
            return True
    return False


def model_reads_points(model: nn.Module) -> bool:
    """Whether any module of a built detector (DDP-wrapped or not) reads `points`."""
    model = getattr(model, 'module', model)
    return any(module_reads_points(module) for module in model.module_list)
