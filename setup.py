"""Packaging for also-pcdet: ALSO occupancy pretraining for OpenPCDet backbones."""
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
VERSION = {}
exec((ROOT / 'also_pcdet' / 'version.py').read_text(), VERSION)

setup(
    name='also-pcdet',
    version=VERSION['__version__'],
    description='ALSO self-supervised occupancy pretraining for OpenPCDet voxel backbones',
    long_description=(ROOT / 'README.md').read_text(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['also_pcdet', 'also_pcdet.*']),
    python_requires='>=3.9',
    install_requires=[
        'torch>=2.0',
        'numpy>=1.23',
        'numba>=0.58',
        'easydict>=1.9',
        'pyyaml>=6.0',
        'tensorboardX>=2.6',
        'tqdm>=4.60',
        'matplotlib>=3.6',
        'protobuf>=4.21',
        'google-crc32c>=1.5',
    ],
    extras_require={
        # spconv CPU and CUDA builds install into the same folders: pick exactly one.
        'cpu': ['spconv==2.3.8'],
        'cu121': ['spconv-cu121==2.3.8'],
        'cu126': ['spconv-cu126==2.3.8'],
        'test': ['pytest>=7.0'],
    },
)
