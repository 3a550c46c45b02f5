"""Batches to losses: the ALSO detector, its occupancy head, and the model builder."""
from .. import pcdet_seam
from .also_detector import ALSO
from .occupancy_head import AlsoOccupancyHead

pcdet_seam.register(detectors={'ALSO': ALSO}, dense_heads={'AlsoOccupancyHead': AlsoOccupancyHead})


def build_network(model_cfg, dataset):
    """Build the configured detector (`MODEL.NAME`) for `dataset`, like pcdet.models.build_network."""
    return pcdet_seam.build_detector(model_cfg, num_class=len(dataset.class_names), dataset=dataset)


__all__ = ['ALSO', 'AlsoOccupancyHead', 'build_network']
