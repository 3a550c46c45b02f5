"""The packaging tells the truth: pyproject.toml declares what the code imports and nothing it does not, its
requires-python is what the code needs (vermin; annotations evaluated at import), and package data ships."""
import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = pytest.importorskip('tomli')

from conftest import REPO

PYPROJECT = tomllib.loads((REPO / 'pyproject.toml').read_text())
PROJECT = PYPROJECT['project']
CODE = [REPO / 'also_pcdet', REPO / 'tools']
# import name -> distribution, where they differ
DISTRIBUTION = {'yaml': 'pyyaml', 'tensorboardX': 'tensorboardx', 'google': 'protobuf', 'google_crc32c': 'google-crc32c'}
OPTIONAL = {'spconv': 'the cpu / cu121 / cu126 extras', 'pcdet': 'OpenPCDet, when installed beside',
            'waymo_open_dataset': "Waymo's protobuf modules, when installed", 'cumm': 'spconv'}


def requirement_name(requirement: str) -> str:
    return re.split(r'[<>=!~\[; ]', requirement, maxsplit=1)[0].lower()


def third_party_imports() -> dict:
    """{top-level module: first file importing it} over the package and tools (not the standard library, not
    the package itself)."""
    found = {}
    for path in sorted(p for folder in CODE for p in folder.rglob('*.py')):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for name in names:
                top = name.split('.')[0]
                if top not in sys.stdlib_module_names and top != 'also_pcdet':
                    found.setdefault(top, path.relative_to(REPO))
    return found


def test_dependencies_are_exactly_what_the_code_imports():
    declared = {requirement_name(r) for r in PROJECT['dependencies']}
    imported = third_party_imports()
    needed = {DISTRIBUTION.get(name, name).lower() for name in imported if name not in OPTIONAL}
    assert needed <= declared, f'imported but not declared: {sorted(needed - declared)}'
    assert declared <= needed, f'declared but never imported: {sorted(declared - needed)}'
    assert 'numba' not in declared
    extras = PROJECT['optional-dependencies']
    assert [requirement_name(r) for r in extras['cpu']] == ['spconv']
    assert {requirement_name(r) for r in extras['cu121'] + extras['cu126']} == {'spconv-cu121', 'spconv-cu126'}
    assert not any(requirement_name(r) == 'torch' and '==' in r for r in PROJECT['dependencies'])  # pinned only
    assert 'torch==' in (REPO / 'requirements' / 'cpu.txt').read_text()                               # for the CPU


@pytest.mark.slow
def test_requires_python_is_what_the_code_needs():
    """vermin finds the oldest Python the syntax and standard-library calls need; annotations that are evaluated
    when a module is imported (no `from __future__ import annotations`) must not use 3.10's `X | Y` or 3.9's
    `list[int]` (vermin does not see `np.ndarray | None`)."""
    minimum = PROJECT['requires-python'].removeprefix('>=')
    vermin = shutil.which('vermin') or str(Path(sys.executable).parent / 'vermin')
    proc = subprocess.run([vermin, '--no-tips', '--eval-annotations', '--violations', f'-t={minimum}-',
                           *map(str, CODE)], capture_output=True, text=True, timeout=120)
    assert 'Target versions not met' not in proc.stdout, proc.stdout[-3000:]
    assert f'Minimum required versions: {minimum}' in proc.stdout, proc.stdout[-3000:]
    builtin_generics = {'list', 'dict', 'tuple', 'set', 'frozenset', 'type'}
    for path in sorted(p for folder in CODE for p in folder.rglob('*.py')):
        tree = ast.parse(path.read_text())
        if any(isinstance(n, ast.ImportFrom) and n.module == '__future__' for n in tree.body):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                annotations = [a.annotation for a in node.args.args + node.args.kwonlyargs if a.annotation]
                annotations += [node.returns] if node.returns else []
            elif isinstance(node, ast.AnnAssign) and not isinstance(node.target, ast.Name):
                continue
            elif isinstance(node, ast.AnnAssign):
                annotations = [node.annotation]
            else:
                continue
            for annotation in annotations:
                for part in ast.walk(annotation):
                    assert not (isinstance(part, ast.BinOp) and isinstance(part.op, ast.BitOr)), \
                        f'{path}:{part.lineno}: X | Y annotation needs Python 3.10'
                    assert not (isinstance(part, ast.Subscript) and isinstance(part.value, ast.Name)
                                and part.value.id in builtin_generics), \
                        f'{path}:{part.lineno}: {part.value.id}[...] annotation needs Python 3.9'


def older_pythons() -> list:
    """(version, interpreter) of Python 3.8-3.10 on this machine (pyenv's builds, then PATH without its shims)."""
    found = []
    for version in ('3.8', '3.9', '3.10'):
        candidates = [*sorted(str(p) for p in Path('/root/.pyenv/versions').glob(f'{version}.*/bin/python')),
                      shutil.which(f'python{version}')]
        python = next((c for c in candidates if c and 'shims' not in c), None)
        if python:
            found.append((version, python))
    return found


@pytest.mark.parametrize('version, python', older_pythons() or [pytest.param('3.8', None, marks=pytest.mark.skip(
    reason='no Python 3.8-3.10 interpreter on this machine'))])
def test_code_compiles_on_older_pythons(version, python, tmp_path):
    proc = subprocess.run([python, '-m', 'compileall', '-q', *map(str, CODE)], capture_output=True, text=True,
                          timeout=300, env={'PYTHONPYCACHEPREFIX': str(tmp_path), 'PATH': '/usr/bin:/bin'})
    assert proc.returncode == 0, f'Python {version}: {proc.stdout[-3000:]}'


@pytest.mark.slow
def test_package_data_glob_ships_data_files(tmp_path):
    """A data file anywhere under also_pcdet/ (e.g. a split list added later) goes into the wheel: built from a
    copy of the project with one added."""
    pytest.importorskip('setuptools')
    project = tmp_path / 'project'
    shutil.copytree(REPO / 'also_pcdet', project / 'also_pcdet', ignore=shutil.ignore_patterns('__pycache__'))
    for name in ('pyproject.toml', 'README.md'):
        shutil.copy(REPO / name, project / name)
    split = project / 'also_pcdet' / 'datasets' / 'splits' / 'example_train.txt'
    split.parent.mkdir(exist_ok=True)
    split.write_text('0000\n')
    built = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q',
                            '-w', str(tmp_path / 'dist'), str(project)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    import zipfile
    wheel = zipfile.ZipFile(next((tmp_path / 'dist').glob('also_pcdet-*.whl')))
    names = set(wheel.namelist())
    assert {'also_pcdet/datasets/splits/example_train.txt', 'also_pcdet/version.py'} <= names
    splits = REPO / 'also_pcdet' / 'datasets' / 'splits'
    shipped = {f'also_pcdet/datasets/splits/{path.name}' for path in splits.glob('*.txt')}
    assert len(shipped) == 6 and shipped <= names  # the official nuScenes / KITTI raw split lists, ALSO's nuScenes val
    metadata = wheel.read(next(n for n in names if n.endswith('METADATA'))).decode()
    assert f"Requires-Python: {PROJECT['requires-python']}" in metadata and 'numba' not in metadata
    assert 'Requires-Dist: google-crc32c' in metadata
