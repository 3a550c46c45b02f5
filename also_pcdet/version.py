"""Package version, also written into every checkpoint."""
__version__ = '0.1.0'
CHECKPOINT_VERSION = f'also_pcdet+{__version__}'
