"""benchmarks/gpu_check.sh dry-run on the CPU: every stage runs (tiny settings) and writes its results row;
the wheel parts are checksummed before anything is installed; the GPU's test list names real tests, and the
stages' time caps fit the 8-minute budget."""
import re
import subprocess
import tarfile

import pytest

from conftest import REPO
from train_cli import cli_env

ROW = re.compile(r'^\| \d{4}-\d\d-\d\d \d\d:\d\d UTC \| CPU, 1 thread \| KITTI \| 1 \| fp32 \| \d+ \| \d+\.\d \| '
                 r'\d+\.\d % \| [\d,]+ \(RSS\) \| \d+\.\d \|$')
STAGES = ['env', 'install', 'spconv', 'tests', 'bench', 'results', 'pretrain_probe']
GPU_TESTS = ['tests/test_cuda.py::', 'tests/test_training.py::test_exported_backbone_loads_into_second',
             'tests/test_openpcdet_flags.py::test_openpcdet_flags_use_amp_acts_on_cuda_and_is_refused_on_the_cpu']


def wheel_parts(folder, part_bytes=4096):
    """A tar of whl/ (a fake wheel and some bytes) split like fetch_gpu_wheels.sh splits it, and its sha256."""
    whl = folder / 'whl'
    whl.mkdir(parents=True)
    (whl / 'fake-0.1-py3-none-any.whl').write_bytes(b'not installed in a dry run')
    (whl / 'padding.bin').write_bytes(bytes(range(256)) * 40)
    with tarfile.open(folder / 'wheels.tar', 'w') as tar:
        tar.add(whl, arcname='whl')
    data = (folder / 'wheels.tar').read_bytes()
    for i in range(0, len(data), part_bytes):
        (folder / f'wheels.tar.part{i // part_bytes:02d}').write_bytes(data[i:i + part_bytes])
    subprocess.run('sha256sum < wheels.tar | cut -d" " -f1 > wheels.tar.sha256', shell=True, cwd=folder, check=True)
    (folder / 'wheels.tar').unlink()
    for path in whl.iterdir():
        path.unlink()
    whl.rmdir()
    return sorted(folder.glob('wheels.tar.part*'))


def gpu_check(tmp_path, wheels, **extra_env):
    env = dict(cli_env(), GPU_CHECK_DRY_RUN='1', GPU_CHECK_OUT=str(tmp_path / 'out'), WHEELS=str(wheels), **extra_env)
    return subprocess.run(['bash', str(REPO / 'benchmarks' / 'gpu_check.sh')], env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.slow
def test_dry_run_runs_every_stage_and_writes_the_row(tmp_path):
    results_before = (REPO / 'benchmarks' / 'RESULTS.md').read_text()
    parts = wheel_parts(tmp_path / 'wheels')
    assert len(parts) >= 3
    proc = gpu_check(tmp_path, tmp_path / 'wheels')
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    done = [line.split()[0] for line in (tmp_path / 'out' / 'stages.txt').read_text().splitlines()]
    assert done == STAGES
    assert 'parts checksum ok' in proc.stdout
    assert 'time caps add up to 465 s (budget 480 s)' in proc.stdout
    assert all(test in proc.stdout for test in GPU_TESTS) and re.search(r'\n\d+ tests collected', proc.stdout)
    assert 'pytest tests/test_occupancy_head.py (at most 130 s;' in proc.stdout  # not the whole suite
    assert (tmp_path / 'wheels' / 'whl' / 'fake-0.1-py3-none-any.whl').read_bytes() == b'not installed in a dry run'
    assert 'spconv check passed on cpu' in proc.stdout
    log = (tmp_path / 'out' / 'gpu_check.log').read_text()
    assert 'spconv check passed on cpu' in log and 'GPU check done in' in log      # the whole output, kept
    rows = (tmp_path / 'out' / 'rows.md').read_text().splitlines()
    assert len(rows) == 1 and ROW.match(rows[0]), rows
    assert (REPO / 'benchmarks' / 'RESULTS.md').read_text() == results_before     # a dry run leaves it alone
    assert re.search(r'\npretrained [1-9]\d* iterations: ', proc.stdout)      # pretrain_probe: trained, exported, probed
    probe = (tmp_path / 'out' / 'det_probe_table.md').read_text()
    assert '| ALSO pretrained | 1 |' in probe and '| random init | 1 |' in probe


@pytest.mark.slow
def test_a_missing_part_stops_before_installing(tmp_path):
    parts = wheel_parts(tmp_path / 'wheels')
    parts[1].unlink()
    proc = gpu_check(tmp_path, tmp_path / 'wheels')
    assert proc.returncode == 1
    output = proc.stdout + proc.stderr
    assert 'GPU CHECK FAILED: the wheel parts' in output and 'do not match wheels.tar.sha256' in output
    assert [line.split()[0] for line in (tmp_path / 'out' / 'stages.txt').read_text().splitlines()] == ['env']


def test_caps_over_the_budget_stop_before_anything_runs(tmp_path):
    proc = gpu_check(tmp_path, tmp_path / 'wheels', GPU_CHECK_TEST_TIMEOUT='200')
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "GPU CHECK FAILED: the stages' time caps add up to 535 s, over the 480 s budget (GPU_CHECK_TEST_TIMEOUT=200)")
    assert not (tmp_path / 'out').exists()
