"""The one place that imports OpenPCDet (`pcdet`): its registries and detector template when it is
installed, this package's fallback modules otherwise.

Only a missing `pcdet` package selects the fallback; any other import error inside an installed
OpenPCDet (missing compiled ops, wrong spconv, ...) propagates."""
try:
    import pcdet.config
    import pcdet.models.backbones_2d
    import pcdet.models.backbones_2d.map_to_bev
    import pcdet.models.backbones_3d
    import pcdet.models.backbones_3d.vfe
    import pcdet.models.dense_heads
    import pcdet.models.detectors
except ModuleNotFoundError as err:
    if err.name != 'pcdet':
        raise
    HAVE_PCDET = False
else:
    HAVE_PCDET = True

if HAVE_PCDET:
    VFES = pcdet.models.backbones_3d.vfe.__all__
    BACKBONES_3D = pcdet.models.backbones_3d.__all__
    MAP_TO_BEV = pcdet.models.backbones_2d.map_to_bev.__all__
    BACKBONES_2D = pcdet.models.backbones_2d.__all__
    DENSE_HEADS = pcdet.models.dense_heads.__all__
    DETECTORS = pcdet.models.detectors.__all__
    DetectorTemplate = pcdet.models.detectors.detector3d_template.Detector3DTemplate
else:
    from .models.backbones import BACKBONES_2D, BACKBONES_3D, MAP_TO_BEV, VFES
    from .models.detector_template import DENSE_HEADS, DetectorTemplate
    DETECTORS = {}


def _add(registry, entries, kind):
    for name, cls in entries.items():
        if registry.get(name, cls) is not cls:
            raise ValueError(f"{kind} name {name!r} is already registered to {registry[name]!r}")
        registry[name] = cls


def register(detectors, dense_heads):
    """Add {name: class} entries to the detector and dense-head registries (OpenPCDet's when installed)."""
    _add(DETECTORS, detectors, 'detector')
    _add(DENSE_HEADS, dense_heads, 'dense head')


def build_detector(model_cfg, num_class, dataset):
    """Build the detector named by `model_cfg.NAME`, like `pcdet.models.detectors.build_detector`."""
    if model_cfg.NAME not in DETECTORS:
        raise KeyError(f"unknown detector NAME {model_cfg.NAME!r}; registered: {sorted(DETECTORS)}")
    return DETECTORS[model_cfg.NAME](model_cfg=model_cfg, num_class=num_class, dataset=dataset)


def pcdet_global_cfg():
    """OpenPCDet's global `cfg` EasyDict when it is installed, else None."""
    return pcdet.config.cfg if HAVE_PCDET else None
