"""The README and docs/: one source per number (a results row shown in the README is a row of
benchmarks/RESULTS.md), every relative link and picture exists, every #anchor names a heading there, and the README
stays short."""
import re
from pathlib import Path

import pytest

from conftest import REPO

PAGES = [REPO / 'README.md', REPO / 'benchmarks' / 'RESULTS.md', *sorted((REPO / 'docs').glob('*.md'))]
LINK = re.compile(r'\]\(([^)\s]+)\)')


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')


def anchors(page: Path) -> set:
    return {slug(line.lstrip('#')) for line in page.read_text().splitlines() if line.startswith('#')}


def test_readme_results_rows_are_rows_of_results_md():
    readme = (REPO / 'README.md').read_text()
    section = readme.split('## Does the pretraining help?')[1].split('\n## ')[0]
    rows = [line for line in section.splitlines() if line.startswith('| ')]
    results = set((REPO / 'benchmarks' / 'RESULTS.md').read_text().splitlines())
    assert len(rows) >= 10 and [row for row in rows if row not in results] == []


def test_readme_is_short():
    assert len((REPO / 'README.md').read_text().splitlines()) < 200


@pytest.mark.parametrize('page', PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_and_anchors_resolve(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r'[a-z]+:', target):
            continue   # http(s), mailto
        path, _, anchor = target.partition('#')
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f'{target}: no such file')
        elif anchor and linked.suffix == '.md' and anchor not in anchors(linked):
            broken.append(f'{target}: no such heading')
    assert broken == []
