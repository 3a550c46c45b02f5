"""Record offsets of many tfrecord files, indexed once and cached in a JSON file."""
import json
import os
import warnings
from pathlib import Path

from .errors import SweepError
from .tfrecord_io import index_records

CACHE_VERSION = 1


def load_record_index(paths, cache_path) -> list:
    """For each tfrecord in `paths`: {'offsets': [...]} of its intact records and, when a header is damaged,
    {'error': reason} too (the offsets are those before the damage).

    A cached entry is reused while its file keeps the same size and mtime; other files are indexed
    (record headers only) and the cache is rewritten. A missing file raises SweepError."""
    cache_path = Path(cache_path)
    cache = _read_cache(cache_path)
    entries, changed = [], False
    for path in paths:
        key = os.path.abspath(path)
        try:
            stat = os.stat(key)
        except OSError as err:
            raise SweepError(path, f'listed tfrecord cannot be opened: {err.strerror or err}') from err
        stamp = [stat.st_size, stat.st_mtime_ns]
        entry = cache.get(key)
        if entry is None or entry.get('stamp') != stamp:
            offsets, damage = index_records(path)
            entry = {'stamp': stamp, 'offsets': offsets, **({'error': damage} if damage else {})}
            cache[key], changed = entry, True
        entries.append(entry)
    if changed:
        _write_cache(cache_path, cache)
    return entries


def _read_cache(path: Path) -> dict:
    """The cached entries that have the shape `load_record_index` writes; anything else is indexed again."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    files = data.get('files') if isinstance(data, dict) and data.get('version') == CACHE_VERSION else None
    if not isinstance(files, dict):
        return {}
    return {key: entry for key, entry in files.items() if _usable(entry)}


def _usable(entry) -> bool:
    def whole(value):
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return (isinstance(entry, dict) and set(entry) <= {'stamp', 'offsets', 'error'}
            and isinstance(entry.get('stamp'), list) and len(entry['stamp']) == 2 and all(map(whole, entry['stamp']))
            and isinstance(entry.get('offsets'), list) and all(map(whole, entry['offsets']))
            and isinstance(entry.get('error', ''), str))


def _write_cache(path: Path, files: dict):
    """Atomic rewrite (several processes may build the index at once); a read-only place only warns."""
    tmp = path.with_name(f'{path.name}.{os.getpid()}.tmp')
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({'version': CACHE_VERSION, 'files': files}))
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        warnings.warn(f'cannot write the tfrecord index cache {path} ({err}); it will be rebuilt next run '
                      f'(point DATA_CONFIG.INDEX_CACHE at a writable file)')
