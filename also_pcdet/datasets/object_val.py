"""KITTI raw drives that hold KITTI 3D object frames of a split (e.g. OpenPCDet's ImageSets/val.txt), from the
object devkit's mapping (`devkit_object/mapping/`):
- `train_rand.txt`: one line of comma-separated integers; object frame i (`%06d`, 0-based) is line `rand[i]`
  (1-based) of
- `train_mapping.txt`: one line per object frame, `<date> <date>_drive_<NNNN>_sync <10-digit raw frame>`.
Every raw drive holding such a frame also holds its 10 Hz near-duplicates, so pretraining on a detection
benchmark's raw data leaves out the whole drive."""
import re
from pathlib import Path

from .readers import SweepError

RAW_DRIVE = re.compile(r'\d{4}_\d{2}_\d{2}_drive_\d{4}_sync')
RAND_FILE, MAPPING_FILE = 'train_rand.txt', 'train_mapping.txt'


def read_rand(path: Path) -> list:
    """train_rand.txt: the mapping line (1-based) of each object frame."""
    if not path.is_file():
        raise SweepError(path, f'not found (the KITTI object devkit has it as devkit_object/mapping/{RAND_FILE})')
    fields = [field.strip() for field in path.read_text().replace('\n', ',').split(',') if field.strip()]
    bad = [field for field in fields if not field.isdigit() or int(field) == 0]
    if bad or not fields:
        raise SweepError(path, f'expected comma-separated 1-based line numbers, found {bad[:3] or "nothing"}')
    return [int(field) for field in fields]


def read_mapping(path: Path) -> list:
    """train_mapping.txt: the raw drive name of each line."""
    if not path.is_file():
        raise SweepError(path, f'not found (the KITTI object devkit has it as devkit_object/mapping/{MAPPING_FILE})')
    drives, bad = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if len(parts) != 3 or not RAW_DRIVE.fullmatch(parts[1]) or not parts[2].isdigit():
            bad.append(f'line {number}: {line!r}')
        else:
            drives.append(parts[1])
    if bad or not drives:
        raise SweepError(path, f'expected lines `<date> <date>_drive_<NNNN>_sync <frame>`, found '
                               f'{bad[:3] or "nothing"}')
    return drives


def object_split_drives(mapping_folder: Path, split_file: Path) -> dict:
    """{raw drive name: number of the split's object frames in it} for the object frame ids listed in
    `split_file` (one per line, e.g. `000001`), mapped through the devkit's `mapping_folder`."""
    rand = read_rand(mapping_folder / RAND_FILE)
    drives = read_mapping(mapping_folder / MAPPING_FILE)
    if max(rand) > len(drives):
        raise SweepError(mapping_folder / RAND_FILE, f'names line {max(rand)} of {MAPPING_FILE}, which has '
                                                     f'{len(drives)} lines')
    if not split_file.is_file():
        raise SweepError(split_file, 'object split file not found (OpenPCDet keeps it as data/kitti/ImageSets/val.txt)')
    ids = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
    bad = [i for i in ids if not i.isdigit() or int(i) >= len(rand)]
    if bad:
        raise SweepError(split_file, f'not object frame ids below {len(rand)} (the frames {RAND_FILE} maps): {bad[:3]}')
    counts = {}
    for frame in ids:
        drive = drives[rand[int(frame)] - 1]
        counts[drive] = counts.get(drive, 0) + 1
    return counts
