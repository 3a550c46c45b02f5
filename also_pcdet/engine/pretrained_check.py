"""What OpenPCDet's `--pretrained_model` loading does with a backbone file, for a given detector config.

The detector is built from the config's VFE, BACKBONE_3D, MAP_TO_BEV and BACKBONE_2D sections (OpenPCDet's
classes when it is installed, else this package's), and the detector template's own
`load_params_from_file` loads the file; its log is what gets reported."""
import logging
import re
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
from easydict import EasyDict

from .. import pcdet_seam
from ..config_schema import MODULE_SECTIONS as SECTIONS
from ..detector_config import VOXEL_PROCESSORS, load_detector_cfg
from .checkpoint import load_checkpoint, model_state_problem
from .export import BACKBONE_PREFIXES

NOT_UPDATED = re.compile(r'^Not updated weight (\S+): ')
DONE = re.compile(r'==> Done \(loaded (\d+)/(\d+)\)')


def detector_geometry(cfg) -> SimpleNamespace:
    """The dataset attributes Detector3DTemplate reads, from a detector config: POINT_CLOUD_RANGE, the voxel
    size (a transform_points_to_voxels step, or DATA_CONFIG.VOXEL_SIZE as in this project's configs), the
    used point features and CLASS_NAMES."""
    data = cfg.DATA_CONFIG
    voxel_size = data.get('VOXEL_SIZE') or next(
        (step.VOXEL_SIZE for step in data.get('DATA_PROCESSOR', []) if step.NAME in VOXEL_PROCESSORS),
        None)
    if voxel_size is None:
        raise ValueError('DATA_CONFIG has no VOXEL_SIZE and no transform_points_to_voxels step')
    pc_range = np.array(data.POINT_CLOUD_RANGE, dtype=np.float32)
    voxel_size = np.array(voxel_size, dtype=np.float32)
    return SimpleNamespace(
        point_feature_encoder=SimpleNamespace(num_point_features=len(data.POINT_FEATURE_ENCODING.used_feature_list)),
        grid_size=np.round((pc_range[3:6] - pc_range[0:3]) / voxel_size).astype(np.int64),
        point_cloud_range=pc_range, voxel_size=voxel_size, depth_downsample_factor=None,
        class_names=list(cfg.get('CLASS_NAMES') or data.get('CLASS_NAMES') or []))


class BackboneParts(pcdet_seam.DetectorTemplate):
    """A detector built from its VFE, BACKBONE_3D, MAP_TO_BEV and BACKBONE_2D sections only: all a backbone
    file can fill (heads are left out; OpenPCDet's anchor head cannot even be built without CUDA)."""

    def __init__(self, cfg):
        geometry = detector_geometry(cfg)
        model_cfg = EasyDict({key: value for key, value in cfg.MODEL.items() if key == 'NAME' or key in SECTIONS})
        super().__init__(model_cfg=model_cfg, num_class=len(geometry.class_names), dataset=geometry)
        self.module_list = self.build_networks()


@dataclass
class LoadCheck:
    """The loader's report (`log`, `loaded`/`total` = its N/M) and, for every backbone key it would leave
    randomly initialised, the reason (`random`); `hint` names a key prefix that explains the misses."""
    log: list
    loaded: int
    total: int
    random: dict = field(default_factory=dict)
    hint: str = ''
    backbone: int = 0  # the detector's backbone keys: every one must load

    @property
    def ok(self) -> bool:
        return not self.random and self.loaded >= self.backbone

    @property
    def done_line(self) -> str:
        return next((line for line in self.log if DONE.search(line)), self.log[-1] if self.log else '')


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def loader_log(model, path) -> list:
    """The lines `model.load_params_from_file(path)` logs."""
    logger = logging.getLogger(f'{__name__}.loader')
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = _Lines()
    logger.addHandler(handler)
    try:
        model.load_params_from_file(str(path), logger=logger, to_cpu=True)
    finally:
        logger.removeHandler(handler)
    return handler.lines


def prefix_hint(missing, file_keys) -> str:
    """A prefix that the file's keys carry in front of the model keys (e.g. 'model.'), if there is one."""
    for key in missing:
        for file_key in file_keys:
            if file_key.endswith('.' + key):
                return (f"the file's keys carry the prefix {file_key[:-len(key)]!r} ({file_key}): OpenPCDet "
                        f"needs them without it, under 'model_state'")
    return ''


def check_pretrained(ckpt_path, cfg) -> LoadCheck:
    """Load `ckpt_path` into the backbone parts of the detector config `cfg` as OpenPCDet would."""
    model = BackboneParts(cfg)
    model_state = model.state_dict()
    backbone = [key for key in model_state if key.startswith(BACKBONE_PREFIXES)]
    ckpt = load_checkpoint(ckpt_path)
    problem = model_state_problem(ckpt)
    if problem and isinstance(ckpt, dict) and 'model_state' in ckpt:
        return LoadCheck([f"==> {ckpt_path}: {problem}; OpenPCDet's load_params_from_file fails on it, nothing "
                          f"loads"], 0, len(model_state), dict.fromkeys(backbone, problem), '', len(backbone))
    if problem:
        keys = list(ckpt) if isinstance(ckpt, dict) else []
        log = [f"==> {ckpt_path} has no 'model_state' entry (top-level keys: {keys[:3]}{' ...' if keys[3:] else ''}): "
               f"OpenPCDet's load_params_from_file stops with KeyError: 'model_state'; nothing loads"]
        return LoadCheck(log, 0, len(model_state), dict.fromkeys(backbone, "the file has no 'model_state'"),
                         prefix_hint(backbone, [k for k in keys if isinstance(k, str)]), len(backbone))

    log = loader_log(model, ckpt_path)
    done = [match for line in log if (match := DONE.search(line))]
    if not done:
        raise RuntimeError(f'the loader did not report "==> Done (loaded N/M)"; it logged: {log}')
    not_updated = [match.group(1) for line in log if (match := NOT_UPDATED.match(line))]
    disk = ckpt['model_state']
    random = {key: (f'the file has {tuple(disk[key].shape)}, the detector needs {tuple(model_state[key].shape)}'
                    if key in disk else 'not in the file')
              for key in not_updated if key.startswith(BACKBONE_PREFIXES)}
    return LoadCheck(log, int(done[-1].group(1)), int(done[-1].group(2)), random,
                     prefix_hint([k for k, why in random.items() if why == 'not in the file'], disk), len(backbone))


def detector_cfg_of(cfg):
    """The detector config an ALSO config was derived from (DERIVED_FROM), else the ALSO config itself."""
    return load_detector_cfg(cfg.DERIVED_FROM) if cfg.get('DERIVED_FROM') else cfg


def require_fit(ckpt_path, detector_cfg, name: str, shown: int = 10) -> LoadCheck:
    """`check_pretrained`, raising ValueError (naming `name` and the first misfits) unless every backbone key of
    `detector_cfg` loads."""
    report = check_pretrained(ckpt_path, detector_cfg)
    if not report.ok:
        misfits = '; '.join(f'{key}: {why}' for key, why in list(report.random.items())[:shown])
        more = f' (and {len(report.random) - shown} more)' if len(report.random) > shown else ''
        raise ValueError(f'{ckpt_path} does not fit {name}: {report.done_line}, {report.backbone} backbone keys '
                         f'expected; {misfits}{more}{". hint: " + report.hint if report.hint else ""}')
    return report
