"""Sweep sources: where a dataset layout keeps its sweeps and how one is read, behind `DATA_CONFIG.DATASET`.

`DATA_CONFIG.DATA_SPLIT[mode]` selects the sweeps; what it names depends on the layout (see each class).
A listed drive, sequence, segment or list file that does not exist raises SweepError when the source is
built (before training); a listed sweep that cannot be read raises SweepError from `read` (skipped)."""
import os
import re
import warnings
from pathlib import Path

import numpy as np

from ..config import ConfigError
from .object_val import MAPPING_FILE, RAND_FILE, object_split_drives
from .official_splits import (KITTI_RAW_SPLITS, LOGGER, NUSCENES_SPLITS, SPLITS_DIR, nuscenes_scenes, shipped_list,
                              warn_all)
from .ray_origins import UNKNOWN_ORIGIN, RayOrigins
from .readers import SweepError, read_float32_records
from .readers.lyft_custom import LYFT_INTENSITY, read_custom_npy, read_lyft_lidar
from .readers.nuscenes import lidar_scenes, load_nuscenes_infos, read_nuscenes_lidar, read_nuscenes_past_sweep
from .readers.once import read_once_lidar
from .readers.tfrecord_index import load_record_index
from .readers.waymo import (DEFAULT_TANH_DIMS, WAYMO_COLUMNS, read_waymo_info, read_waymo_npy,
                            read_waymo_tfrecord_frame)

ALL = 'all'  # DATA_SPLIT value: everything under DATA_PATH
KITTI_FEATURES = ('x', 'y', 'z', 'intensity')
TIME_FEATURES = ('timestamp', 'time')  # time lag of a merged sweep: 0 for the single sweeps ALSO reads
WAYMO_FEATURES = ('x', 'y', 'z', 'intensity', 'elongation')
NUSCENES_FEATURES = ('x', 'y', 'z', 'intensity', 'timestamp')
WAYMO_NAME_PREFIXES = ('training', 'validation', 'testing')  # OpenPCDet's segment-name variants
KITTI_RAW_DRIVE = re.compile(r'\d{4}_\d{2}_\d{2}_drive_\d{4}_sync')
# a line of KITTI-360's window lists (data_3d_semantics/train/2013_05_28_drive_{train,val}.txt)
KITTI360_WINDOW = re.compile(r'(?:.*/)?(\d{4}_\d{2}_\d{2}_drive_\d{4}_sync)/static/(\d+)_(\d+)\.ply')
# a line of official ALSO's KITTI-360 lists (kitti_360_{train,val}_velodynes.txt): one sweep
KITTI360_FRAME = re.compile(r'(?:.*/)?(\d{4}_\d{2}_\d{2}_drive_\d{4}_sync)/velodyne_points/data/(\d+)\.bin')


class SweepSource:
    """A list of sweeps of one layout. Subclasses fill `self.items` (paths relative to the root unless
    they override `path`) and implement `read`; `FEATURES` are the columns `read` returns."""

    FEATURES = KITTI_FEATURES
    DEFAULT_ORIGIN = (0.0, 0.0, 0.0)
    # feature -> how much larger stock OpenPCDet feeds it than `read` returns (undone at export)
    STOCK_INPUT_SCALE = {}
    # intensity range of `read`'s points (None: not checked): the layouts' readers scale it to [0, 1] (KITTI
    # reflectance as stored, nuScenes / ONCE 0-255 / 255, Lyft / 100, Waymo tanh); sweeps mostly outside it fail
    # `sweep_checks.check_sweep`
    INTENSITY_RANGE = (0.0, 1.0)
    PCDET_DATASET = None  # the OpenPCDet DATA_CONFIG.DATASET whose sweeps this layout reads
    RANDOM_READ = False  # True: `read(index, rng)` draws (seeded by the dataset's seed, epoch and index)
    MEASURED_INTENSITY = True  # False: the files hold a constant, so ALSO regresses no intensity

    def __init__(self, dataset_cfg, root: Path, split):
        self.cfg, self.root, self.split = dataset_cfg, Path(root), split
        self.origin = np.asarray(dataset_cfg.get('SENSOR_ORIGIN', self.DEFAULT_ORIGIN), dtype=np.float64)
        self.items = []
        self.unread = []  # (where, why): what the split names that gives no sweep (see `unread_summary`)

    def listed_files(self, folders, suffix: str) -> list:
        """`files_in` (a missing folder is a SweepError); a listed folder without such files is recorded in
        `unread`, since the run would silently read nothing from it."""
        paths = []
        for folder in folders:
            found = files_in(self.root, [folder], suffix)
            if not found:
                self.unread.append((str(self.root / folder), f'listed, but holds no {suffix} file'))
            paths += found
        return paths

    def unread_summary(self, shown: int = 3) -> str:
        """One line counting what the split names that gives no sweep, with the first `shown` ('' if none)."""
        if not self.unread:
            return ''
        more = f'; and {len(self.unread) - shown} more' if len(self.unread) > shown else ''
        return (f'{len(self.unread)} listed item(s) give no sweep: '
                + '; '.join(f'{where}: {why}' for where, why in self.unread[:shown]) + more)

    def __len__(self):
        return len(self.items)

    def frame_id(self, index: int) -> str:
        return str(self.items[index])

    def location(self, index: int) -> str:
        """Where sweep `index` lives (a file path), for warnings."""
        return str(self.path(index))

    def path(self, index: int) -> Path:
        return self.root / self.items[index]

    def read(self, index: int):
        """Return (points float32 (N, C) in the source's feature order, origin): the sensor position (3,) every
        ray starts at, or a RayOrigins giving each point's own (index -1: input only, never a query source)."""
        raise NotImplementedError


def read_split_file(path: Path) -> list:
    """Ids listed one per line (blank lines ignored); a missing list is a SweepError naming it."""
    if not path.is_file():
        raise SweepError(path, 'split file not found')
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def list_file(root: Path, name) -> Path:
    """A list file named in DATA_SPLIT: absolute, or relative to DATA_PATH."""
    path = Path(name)
    return path if path.is_absolute() else root / path


def files_in(root: Path, folders, suffix: str) -> list:
    """Paths (relative to `root`) of the entries ending in `suffix` of each folder (relative to `root`),
    sorted by name within a folder; a missing folder is a SweepError."""
    paths = []
    for folder in folders:
        if not (root / folder).is_dir():
            raise SweepError(root / folder, 'listed folder not found')
        names = sorted(entry.name for entry in os.scandir(root / folder) if entry.name.endswith(suffix))
        paths += [folder / name for name in names]
    return paths


class KittiBinSweeps(SweepSource):
    """Sweeps stored as KITTI velodyne `.bin` records (float32 x, y, z, reflectance), seen from SENSOR_ORIGIN."""

    PCDET_DATASET = 'KittiDataset'

    def read(self, index):
        return read_float32_records(self.path(index), len(KITTI_FEATURES)), self.origin


class KittiObjectSweeps(KittiBinSweeps):
    """KITTI 3D object: `training/velodyne/<id>.bin` for the ids in `ImageSets/<split>.txt`, or
    `testing/velodyne/<id>.bin` for the `test` split (as OpenPCDet's KittiDataset)."""

    def __init__(self, dataset_cfg, root, split):
        super().__init__(dataset_cfg, root, split)
        self.items = read_split_file(self.root / 'ImageSets' / f'{split}.txt')
        self.folder = self.root / ('testing' if split == 'test' else 'training') / 'velodyne'

    def path(self, index: int) -> Path:
        return self.folder / f'{self.items[index]}.bin'


class KittiRawSweeps(KittiBinSweeps):
    """KITTI raw: `<date>/<date>_drive_<NNNN>_sync/velodyne_points/data/<NNNNNNNNNN>.bin`.

    DATA_SPLIT[mode] is `train` / `val` (KITTI's official drive split, see official_splits.py: val = the 13 val
    drives present under DATA_PATH, train = every other drive), `all` (every drive, with a warning) or a drive
    list file (relative to DATA_PATH, or absolute) naming one `<date>_drive_<NNNN>_sync` per line."""

    def __init__(self, dataset_cfg, root, split):
        super().__init__(dataset_cfg, root, split)
        if split == ALL or split in KITTI_RAW_SPLITS:
            drives = sorted(path.relative_to(self.root) for path in self.root.glob('*/*_drive_*_sync'))
            if split == ALL:
                warn_all(type(self).__name__, self.root)
            else:
                val = set(shipped_list('kitti_raw_val'))
                drives = [drive for drive in drives if (drive.name in val) == (split == 'val')]
                if not drives:
                    raise SweepError(self.root, f'no KITTI raw {split} drive under it (val: the drives listed in '
                                                f'{SPLITS_DIR / "kitti_raw_val.txt"}; train: any other)')
        else:
            names = [Path(line).name for line in read_split_file(list_file(self.root, split))]
            bad = [name for name in names if not KITTI_RAW_DRIVE.fullmatch(name)]
            if bad:
                raise SweepError(list_file(self.root, split), f'not <date>_drive_<NNNN>_sync names: {bad[:3]}')
            drives = [Path(name[:10], name) for name in names]
        self.items = self.listed_files([drive / 'velodyne_points' / 'data' for drive in drives], '.bin')
        if split == 'train':
            self.items = self.without_object_val(self.items)

    def without_object_val(self, items: list) -> list:
        """The default `train` sweeps without the drives that hold KITTI 3D object val frames (found with
        OBJECT_DEVKIT_MAPPING and OBJECT_VAL_SPLIT, see object_val.py), or all of them with
        ALLOW_OBJECT_VAL_OVERLAP; with neither, a SweepError saying what to set."""
        mapping, val = self.cfg.get('OBJECT_DEVKIT_MAPPING'), self.cfg.get('OBJECT_VAL_SPLIT')
        if mapping or val:
            if not (mapping and val):
                missing = 'OBJECT_VAL_SPLIT (the object split, ImageSets/val.txt)' if mapping else \
                    f'OBJECT_DEVKIT_MAPPING (the devkit folder devkit_object/mapping with {RAND_FILE} + {MAPPING_FILE})'
                raise SweepError(self.root, f'KITTI raw train: DATA_CONFIG.{missing} is not set')
            held = object_split_drives(list_file(self.root, mapping), list_file(self.root, val))
            kept = [item for item in items if item.parts[1] not in held]
            drives = sorted({item.parts[1] for item in items} & set(held))
            LOGGER.info(f'KITTI raw train: left out {len(drives)} drives ({len(items) - len(kept)} sweeps) holding '
                        f'{sum(held[d] for d in drives)} of the {sum(held.values())} KITTI object frames of {val}')
            if not kept:
                raise SweepError(self.root, f'KITTI raw train: every train drive holds a KITTI object frame of {val}')
            return kept
        if self.cfg.get('ALLOW_OBJECT_VAL_OVERLAP', False):
            LOGGER.warning('KITTI raw train includes the drives of the KITTI 3D object val frames '
                           '(ALLOW_OBJECT_VAL_OVERLAP): a detector fine-tuned on KITTI object and evaluated on its val '
                           'split has seen those scenes in pretraining')
            return items
        raise SweepError(self.root, 'the default KITTI raw `train` split holds the drives of the KITTI 3D object val '
                                    'frames. To leave them out, set DATA_CONFIG.OBJECT_DEVKIT_MAPPING to the object '
                                    f"devkit's devkit_object/mapping folder ({RAND_FILE} + {MAPPING_FILE}) and "
                                    "DATA_CONFIG.OBJECT_VAL_SPLIT to the object split's ImageSets/val.txt; to accept "
                                    'the overlap knowingly, set DATA_CONFIG.ALLOW_OBJECT_VAL_OVERLAP: True')


class Kitti360Sweeps(KittiBinSweeps):
    """KITTI-360: `data_3d_raw/<date>_drive_<NNNN>_sync/velodyne_points/data/<NNNNNNNNNN>.bin` (HDL-64,
    float32 x, y, z, reflectance, velodyne frame).

    DATA_SPLIT[mode] is `all` (every drive under data_3d_raw/) or a list file (relative to DATA_PATH, or
    absolute) whose lines are drive names (`2013_05_28_drive_0000_sync`: the whole drive) or lines of
    KITTI-360's window lists `data_3d_semantics/train/2013_05_28_drive_{train,val}.txt`
    (`.../<drive>/static/<first>_<last>.ply`: that drive's frames first..last, the split ALSO uses) or of
    official ALSO's own lists `kitti_360_{train,val}_velodynes.txt` (`data_3d_raw/<drive>/velodyne_points/data/
    <frame>.bin`: one sweep). A frame named twice (overlapping windows; ALSO's val list repeats 605 of its 14,600
    frames) is read once. `all` warns: it includes the val windows."""

    RAW = Path('data_3d_raw')

    def __init__(self, dataset_cfg, root, split):
        super().__init__(dataset_cfg, root, split)
        if split == ALL:
            drives = {path.name: None for path in sorted((self.root / self.RAW).glob('*_drive_*_sync'))}
            if not drives:
                raise SweepError(self.root / self.RAW, 'no <date>_drive_<NNNN>_sync folder')
            warn_all(type(self).__name__, self.root)
        else:
            drives = self.listed_drives(list_file(self.root, split))
        for drive, windows in drives.items():
            folder = self.RAW / drive / 'velodyne_points' / 'data'
            files = self.listed_files([folder], '.bin')
            if windows is not None:
                files = self.in_windows(folder, files, windows)
            self.items += files

    def in_windows(self, folder, files, windows) -> list:
        """The frames of `files` inside `windows`; the frames the windows name that the drive lacks (past its
        end, in a gap) are recorded in `unread`."""
        named = set().union(*(range(first, last + 1) for first, last in windows))
        kept = [f for f in files if f.stem.isdigit() and int(f.stem) in named]
        absent = len(named) - len({int(f.stem) for f in kept})
        if files and absent:
            frames = sorted(int(f.stem) for f in files if f.stem.isdigit())
            self.unread.append((str(self.root / folder), f'{absent} of the {len(named)} frames its windows name are '
                                                         f'not there (the drive has frames {frames[0]}..{frames[-1]})'))
        return kept

    @staticmethod
    def listed_drives(path) -> dict:
        """{drive: None (all frames) or [(first, last), ...]} in the order the list file names them."""
        drives, bad = {}, []
        for line in read_split_file(path):
            window, frame = KITTI360_WINDOW.fullmatch(line), KITTI360_FRAME.fullmatch(line)
            if window or frame:
                drive, first, last = ((window.group(1), int(window.group(2)), int(window.group(3))) if window
                                      else (frame.group(1), int(frame.group(2)), int(frame.group(2))))
                if drives.get(drive, []) is not None:  # a whole-drive line wins over windows
                    drives.setdefault(drive, []).append((first, last))
            elif KITTI_RAW_DRIVE.fullmatch(Path(line).name):
                drives[Path(line).name] = None
            else:
                bad.append(line)
        if bad:
            raise SweepError(path, f'neither <date>_drive_<NNNN>_sync names, <drive>/velodyne_points/data/<frame>.bin '
                                   f'sweeps nor <drive>/static/<first>_<last>.ply windows: {bad[:3]}')
        return drives


def sequence_name(sequence) -> str:
    """`8`, `'8'` and `'08'` all name `sequences/08`; other names are kept as they are."""
    text = str(sequence)
    return text.zfill(2) if text.isdigit() else text


class SequenceSweeps(KittiBinSweeps):
    """SemanticKITTI-style sequences: `sequences/<NN>/velodyne/<NNNNNN>.bin`.

    DATA_SPLIT[mode] is a list of sequence ids (e.g. ['00', '01']) or `all`."""

    def __init__(self, dataset_cfg, root, split):
        super().__init__(dataset_cfg, root, split)
        if split == ALL:
            sequences = sorted(path.parent.name for path in self.root.glob('sequences/*/velodyne'))
            warn_all(type(self).__name__, self.root)
        else:
            sequences = [sequence_name(s) for s in split]
        self.items = self.listed_files([Path('sequences', s, 'velodyne') for s in sequences], '.bin')


class NuScenesSweeps(SweepSource):
    """nuScenes LIDAR_TOP, in the sensor frame: the key frames `samples/LIDAR_TOP/*.pcd.bin`, plus the
    in-between `sweeps/LIDAR_TOP/*.pcd.bin` when INCLUDE_SWEEPS is set. DATA_SPLIT[mode] is an official split
    (`train`, `val`, `mini_train`, `mini_val`, or official ALSO's `also_train` / `also_val`: the 600 / 100 train
    scenes it pretrains / validates on; see official_splits.py), i.e. the files of its scenes, found with the tables in
    `<DATA_PATH>/<VERSION>/`, see readers/nuscenes.py `lidar_scenes`), `all` (with a warning), or a list file
    (relative to DATA_PATH, or absolute) of such paths relative to DATA_PATH, one per line."""

    FEATURES = NUSCENES_FEATURES
    STOCK_INPUT_SCALE = {'intensity': 255.0}  # OpenPCDet's nuScenes loader keeps intensity in 0-255
    PCDET_DATASET = 'NuScenesDataset'

    def __init__(self, dataset_cfg, root, split):
        super().__init__(dataset_cfg, root, split)
        if split == ALL or split in NUSCENES_SPLITS:
            kinds = ('samples', 'sweeps') if dataset_cfg.get('INCLUDE_SWEEPS', False) else ('samples',)
            self.items = self.listed_files([Path(kind, 'LIDAR_TOP') for kind in kinds], '.pcd.bin')
            if split == ALL:
                warn_all(type(self).__name__, self.root)
            else:
                tables = self.root / dataset_cfg.get('VERSION', 'v1.0-trainval')
                wanted = nuscenes_scenes(split)
                scenes = lidar_scenes(tables, [path.name for path in self.items])
                self.items = [path for path, scene in zip(self.items, scenes) if scene in wanted]
                if not self.items:
                    raise SweepError(tables, f'no LIDAR_TOP sweep under {self.root} belongs to a nuScenes {split} '
                                             f'scene')
        else:
            self.items = [Path(line) for line in read_split_file(list_file(self.root, split))]

    def read(self, index):
        return read_nuscenes_lidar(self.path(index)), self.origin


class OnceSweeps(SweepSource):
    """ONCE: `data/<sequence>/lidar_roof/<frame>.bin` (float32 x, y, z, intensity 0-255, roof lidar frame)
    for the sequences listed in `ImageSets/<split>.txt`. DATA_SPLIT[mode] names the list: train, val, test or
    the unlabelled raw_small / raw_medium / raw_large, or is `all` (every sequence under data/). Intensity
    is divided by 255 as ALSO does; stock OpenPCDet feeds 0-255 (folded into the export)."""

    STOCK_INPUT_SCALE = {'intensity': 255.0}
    PCDET_DATASET = 'ONCEDataset'

    def __init__(self, dataset_cfg, root, split):
        super().__init__(dataset_cfg, root, split)
        if split == ALL:
            sequences = sorted(path.parent.name for path in self.root.glob('data/*/lidar_roof'))
            warn_all(type(self).__name__, self.root)
        else:
            sequences = read_split_file(self.root / 'ImageSets' / f'{split}.txt')
        self.items = self.listed_files([Path('data', s, 'lidar_roof') for s in sequences], '.bin')

    def read(self, index):
        return read_once_lidar(self.path(index)), self.origin


class NuScenesMultiSweeps(SweepSource):
    """nuScenes key frames merged with their past sweeps as OpenPCDet's nuScenes loader feeds its detectors
    (`MAX_SWEEPS`): each past sweep, its ego-car points dropped, is moved into the key frame's lidar frame by its
    `transform_matrix` and gets its `time_lag` (s) as the timestamp feature; the key frame's points get 0. The
    sweeps come from OpenPCDet's info pkl: DATA_SPLIT[mode] names it (relative to DATA_PATH, or absolute),
    e.g. `nuscenes_infos_10sweeps_train.pkl`. With MAX_SWEEPS - 1 below the key frame's `sweeps`, a random subset
    of MAX_SWEEPS - 1 is merged, drawn without replacement in the drawn order as OpenPCDet's
    `get_lidar_with_sweeps` does (seeded: `read`'s `rng`); otherwise all of them, in the pkl's order (OpenPCDet
    draws the same set, shuffled). Only the key frame's points seed queries (RayOrigins index 0, past sweeps -1):
    the scene moved since the past sweeps, and their rays started elsewhere."""

    FEATURES = NUSCENES_FEATURES
    STOCK_INPUT_SCALE = {'intensity': 255.0}
    PCDET_DATASET = 'NuScenesDataset'
    RANDOM_READ = True  # `read` takes an `rng`: the past sweeps it merges are drawn

    def __init__(self, dataset_cfg, root, split):
        super().__init__(dataset_cfg, root, split)
        self.max_sweeps = int(dataset_cfg.get('MAX_SWEEPS', 10))
        if self.max_sweeps < 1:
            raise SweepError(list_file(self.root, split), f'MAX_SWEEPS must be at least 1, got {self.max_sweeps}')
        self.items = load_nuscenes_infos(list_file(self.root, split))
        if self.max_sweeps > 1:
            self.require_sweep_folders(list_file(self.root, split))

    def require_sweep_folders(self, infos):
        """SweepError naming a folder of past sweeps (nuScenes' `sweeps/LIDAR_TOP`) that the info pkl lists
        but that does not exist: a key-frame-only download, named as such rather than as every key frame's
        unreadable sweep."""
        folders = {Path(sweep['lidar_path']).parent for info in self.items for sweep in info['sweeps']}
        for folder in sorted(folders):
            if not (self.root / folder).is_dir():
                raise SweepError(self.root / folder, f'folder of the past sweeps that {infos} merges into its key '
                                                     f'frames (MAX_SWEEPS {self.max_sweeps}) not found: download '
                                                     f"nuScenes' sweeps, or set MAX_SWEEPS 1 to read key frames only")

    def frame_id(self, index: int) -> str:
        return self.items[index]['lidar_path']

    def path(self, index: int) -> Path:
        return self.root / self.items[index]['lidar_path']

    def past_sweeps(self, index: int, rng: np.random.Generator = None) -> list:
        """The past sweeps of key frame `index` that `read` merges (see the class docstring); `rng` None: seeded
        by `index`."""
        sweeps = self.items[index]['sweeps']
        if self.max_sweeps - 1 >= len(sweeps):
            return sweeps
        rng = np.random.default_rng(index) if rng is None else rng
        return [sweeps[k] for k in rng.choice(len(sweeps), self.max_sweeps - 1, replace=False)]

    def read(self, index, rng: np.random.Generator = None):
        parts = [read_nuscenes_lidar(self.path(index))]
        for sweep in self.past_sweeps(index, rng):
            try:
                parts.append(read_nuscenes_past_sweep(self.root / sweep['lidar_path'], sweep['transform_matrix'],
                                                      sweep['time_lag']))
            except SweepError as err:  # the key frame is fine: name the past sweep and what is wrong with it
                raise SweepError(self.path(index), f'its past sweep {err.path}: {err.reason}') from err
        index_per_point = np.full(sum(len(p) for p in parts), UNKNOWN_ORIGIN, dtype=np.int64)
        index_per_point[:len(parts[0])] = 0
        return np.concatenate(parts), RayOrigins(self.origin.reshape(1, 3), index_per_point, ('LIDAR_TOP key frame',))


def waymo_segments(root: Path, split: str, folder, suffix: str = '') -> list:
    """Segment names listed in `ImageSets/<split>.txt` (OpenPCDet lists them as `<segment>.tfrecord`), each
    resolved as OpenPCDet's `check_sequence_name_with_all_version` does when `<folder>/<name><suffix>` is absent:
    `segment-...` as `{training,validation,testing}_segment-...`, else without `_with_camera_labels` (the listed
    name when no variant exists)."""
    names = []
    for line in read_split_file(root / 'ImageSets' / f'{split}.txt'):
        name = Path(line).stem
        variants = ([name] + [name.replace('segment', f'{prefix}_segment') for prefix in WAYMO_NAME_PREFIXES]
                    + [name.replace('_with_camera_labels', '')])
        names.append(next((v for v in variants if (root / folder / f'{v}{suffix}').exists()), name))
    return names


def waymo_tanh_dims(dataset_cfg) -> tuple:
    """DATA_CONFIG.POINTS_TANH_DIM (None or absent: the intensity, as OpenPCDet), checked against the 5 columns."""
    dims = dataset_cfg.get('POINTS_TANH_DIM')
    if dims is None:
        return DEFAULT_TANH_DIMS
    if not all(isinstance(d, int) and 0 <= d < WAYMO_COLUMNS for d in dims):
        raise ConfigError(f'DATA_CONFIG.POINTS_TANH_DIM {list(dims)}: columns of x, y, z, intensity, elongation '
                          f'(0-{WAYMO_COLUMNS - 1}) expected')
    return tuple(dims)


class WaymoProcessedSweeps(SweepSource):
    """OpenPCDet's processed Waymo frames (vehicle frame): `<PROCESSED_DATA_TAG>/<segment>/<NNNN>.npy` for the
    segments in `ImageSets/<split>.txt` (names resolved as OpenPCDet does, see `waymo_segments`), all five lidars
    and both returns, the POINTS_TANH_DIM columns tanh-squashed (default the intensity), NLZ points kept only
    with DISABLE_NLZ_FLAG_ON_POINTS: True (absent: dropped, as OpenPCDet's loader).

    Which lidar cast each point comes from the segment's info list `<segment>/<segment>.pkl`
    (`num_points_of_each_lidar`, written next to the frames by OpenPCDet's create_waymo_infos); its rays start
    at that lidar's LIDAR_ORIGINS entry. Both returns of a lidar seed queries (the info does not tell them
    apart). A segment without its info list is named in a warning when the source is built and its frames
    are skipped as unusable (queries cast from the wrong lidar would label occupied space "empty"); when no
    listed segment has one, building the source fails. An unreadable info list skips its segment's frames."""

    FEATURES = WAYMO_FEATURES
    PCDET_DATASET = 'WaymoDataset'

    def __init__(self, dataset_cfg, root, split):
        super().__init__(dataset_cfg, root, split)
        tag = dataset_cfg.get('PROCESSED_DATA_TAG', 'waymo_processed_data_v0_5_0')
        self.keep_nlz = dataset_cfg.get('DISABLE_NLZ_FLAG_ON_POINTS', False)
        self.tanh_dims = waymo_tanh_dims(dataset_cfg)
        self.lidar_origins = dataset_cfg.get('LIDAR_ORIGINS')
        segments = waymo_segments(self.root, split, tag)
        self.items = self.listed_files([Path(tag, segment) for segment in segments], '.npy')
        self.info_paths, self.missing_info, self.lidar_counts = {}, {}, {}
        for segment in segments:
            info = self.root / tag / segment / f'{segment}.pkl'
            (self.info_paths if info.is_file() else self.missing_info)[segment] = info
        if self.missing_info:
            if not self.info_paths:
                raise SweepError(next(iter(self.missing_info.values())),
                                 f'no info list for any of the {len(segments)} segments: without '
                                 f'num_points_of_each_lidar the lidar of each point is unknown (run '
                                 f"OpenPCDet's create_waymo_infos)")
            warnings.warn(f'{len(self.missing_info)} of {len(segments)} Waymo segments have no info list '
                          f'(e.g. {next(iter(self.missing_info.values()))}): their frames are skipped',
                          stacklevel=2)

    def read(self, index):
        path = self.path(index)
        segment = path.parent.name
        if segment in self.missing_info:
            raise SweepError(path, f'no info list {self.missing_info[segment]}: the lidar of each point is unknown')
        if segment not in self.lidar_counts:  # read on first use (per worker); a bad one skips its frames
            try:
                self.lidar_counts[segment] = read_waymo_info(self.info_paths[segment])
            except SweepError as err:
                self.lidar_counts[segment] = err
        if isinstance(self.lidar_counts[segment], SweepError):
            raise SweepError(path, str(self.lidar_counts[segment]))  # names the info list and its problem
        counts = self.lidar_counts[segment].get(int(path.stem))
        if counts is None:
            raise SweepError(path, f'frame {int(path.stem)} is not in {segment}.pkl: the lidar of each point '
                                   f'is unknown')
        return read_waymo_npy(path, counts, self.lidar_origins, self.keep_nlz, self.tanh_dims)


class WaymoTfrecordSweeps(SweepSource):
    """Raw Waymo `Frame` records, read without TensorFlow: `<RAW_DATA_TAG>/<segment>.tfrecord` for the segments
    in `ImageSets/<split>.txt`, one sweep per record. Record offsets are indexed once and cached in INDEX_CACHE
    (default `<DATA_PATH>/<RAW_DATA_TAG>_index.json`). The same points as WaymoProcessedSweeps gives for the
    frame (all lidars, both returns, same NLZ treatment); each ray starts at its lidar's extrinsic. A file
    damaged partway (cut, bytes appended, a bad length) keeps its records before the damage; the rest of it
    is one unreadable item, reported and counted once."""

    FEATURES = WAYMO_FEATURES
    PCDET_DATASET = 'WaymoDataset'

    def __init__(self, dataset_cfg, root, split):
        super().__init__(dataset_cfg, root, split)
        tag = dataset_cfg.get('RAW_DATA_TAG', 'raw_data')
        files = [Path(tag, f'{segment}.tfrecord') for segment in waymo_segments(self.root, split, tag, '.tfrecord')]
        self.tanh_dims = waymo_tanh_dims(dataset_cfg)
        cache = dataset_cfg.get('INDEX_CACHE') or self.root / f'{tag}_index.json'
        self.unindexed = {}
        for name, entry in zip(files, load_record_index([self.root / name for name in files], cache)):
            self.items += [(name, offset) for offset in entry['offsets']]
            if 'error' in entry:  # the damaged rest of the file: one bad item, counted once
                self.unindexed[name] = (len(entry['offsets']), entry['error'])
                self.items.append((name, None))

    def frame_id(self, index: int) -> str:
        name, offset = self.items[index]
        return f'{name}@{offset}'

    def path(self, index: int) -> Path:
        return self.root / self.items[index][0]

    def location(self, index: int) -> str:
        name, offset = self.items[index]
        return f'{self.root / name} (record at offset {offset})' if offset is not None else str(self.root / name)

    def read(self, index):
        name, offset = self.items[index]
        if offset is None:
            intact, damage = self.unindexed[name]
            raise SweepError(self.path(index), f'damaged after {intact} intact records, the rest is lost: {damage}')
        return read_waymo_tfrecord_frame(self.path(index), offset, self.cfg.get('DISABLE_NLZ_FLAG_ON_POINTS', False),
                                         self.tanh_dims)


class LyftSweeps(SweepSource):
    """Lyft Level 5 lidar, in the sensor frame: `<VERSION>/lidar/*.bin` (OpenPCDet's data/lyft/trainval/lidar).
    DATA_SPLIT[mode] is `all` or a list file (relative to DATA_PATH, or absolute) of such paths relative to
    DATA_PATH, one per line. The released files hold a constant intensity of 100: it is read as 1 (folded back
    at export) and ALSO regresses no intensity on Lyft."""

    FEATURES = KITTI_FEATURES
    STOCK_INPUT_SCALE = {'intensity': LYFT_INTENSITY}
    PCDET_DATASET = 'LyftDataset'
    MEASURED_INTENSITY = False

    def __init__(self, dataset_cfg, root, split):
        super().__init__(dataset_cfg, root, split)
        if split == ALL:
            self.items = self.listed_files([Path(dataset_cfg.get('VERSION', 'trainval'), 'lidar')], '.bin')
            warn_all(type(self).__name__, self.root)
        else:
            self.items = [Path(line) for line in read_split_file(list_file(self.root, split))]

    def read(self, index):
        return read_lyft_lidar(self.path(index)), self.origin


class CustomSweeps(SweepSource):
    """OpenPCDet's custom dataset: `points/<id>.npy` (float32 (N, 4) x, y, z, intensity, in the frame of
    SENSOR_ORIGIN) for the ids in `ImageSets/<split>.txt`."""

    PCDET_DATASET = 'CustomDataset'
    INTENSITY_RANGE = None  # any scale: a custom dataset's intensity is the user's own

    def __init__(self, dataset_cfg, root, split):
        super().__init__(dataset_cfg, root, split)
        self.items = read_split_file(self.root / 'ImageSets' / f'{split}.txt')

    def path(self, index: int) -> Path:
        return self.root / 'points' / f'{self.items[index]}.npy'

    def read(self, index):
        return read_custom_npy(self.path(index), len(self.FEATURES)), self.origin


SOURCES = {cls.__name__: cls for cls in (KittiObjectSweeps, KittiRawSweeps, Kitti360Sweeps, SequenceSweeps,
                                         NuScenesSweeps, NuScenesMultiSweeps, OnceSweeps, WaymoProcessedSweeps,
                                         WaymoTfrecordSweeps, LyftSweeps, CustomSweeps)}


def build_source(dataset_cfg, root, split) -> SweepSource:
    name = dataset_cfg.DATASET
    if name not in SOURCES:
        raise KeyError(f'DATA_CONFIG.DATASET {name!r} is unknown; known: {sorted(SOURCES)}')
    return SOURCES[name](dataset_cfg, root, split)
