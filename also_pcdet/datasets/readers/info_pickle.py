"""OpenPCDet's info pkls (Waymo's per-segment lists, nuScenes' `nuscenes_infos_<N>sweeps_<split>.pkl`), unpickled
with only plain values and numpy arrays allowed: a pkl is code, and anything else in one is refused."""
import pickle

from .errors import SweepError, refuse_special


class InfoUnpickler(pickle.Unpickler):
    """OpenPCDet's infos hold dicts, lists, numbers, strings and numpy arrays: nothing else is loaded."""
    ALLOWED = {('numpy', 'ndarray'), ('numpy', 'dtype'), ('numpy.core.multiarray', '_reconstruct'),
               ('numpy._core.multiarray', '_reconstruct'), ('numpy.core.multiarray', 'scalar'),
               ('numpy._core.multiarray', 'scalar')}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED or module == 'numpy.dtypes':
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f'refusing to load {module}.{name} (not a plain value or numpy array)')


def load_info_pickle(path, what: str = 'the info list'):
    """The object in an info pkl; SweepError naming `path` if it is missing, unreadable (damaged, cut short, a
    special file) or holds other objects."""
    refuse_special(path)
    try:
        with open(path, 'rb') as f:
            return InfoUnpickler(f).load()
    except FileNotFoundError as err:
        raise SweepError(path, f'{what} not found') from err
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as err:
        raise SweepError(path, f'cannot read {what}: {err}') from err
