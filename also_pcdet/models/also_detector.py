"""The ALSO pretraining 'detector': a stock OpenPCDet backbone stack with the occupancy head on top."""
from ..pcdet_seam import DetectorTemplate
from .occupancy_head import read_scalars


class ALSO(DetectorTemplate):
    """VFE -> BACKBONE_3D -> MAP_TO_BEV -> BACKBONE_2D -> DENSE_HEAD (AlsoOccupancyHead).

    Training returns OpenPCDet's `(ret_dict, tb_dict, disp_dict)` (tb_dict values are 0-d tensors on the
    device: reading them syncs, so the trainer reads them every LOG_INTERVAL steps); eval returns
    `(pred_dict, metric_dict)` with per-pair occupancy probabilities, logits and targets and the same
    metrics as Python floats."""

    def __init__(self, model_cfg, num_class, dataset):
        super().__init__(model_cfg=model_cfg, num_class=num_class, dataset=dataset)
        self.module_list = self.build_networks()

    def encode(self, batch_dict):
        """Every module but the occupancy head: adds the backbone outputs (`multi_scale_3d_features`,
        `spatial_features_2d`, ...) to `batch_dict`."""
        for module in self.module_list:
            if module is not self.dense_head:
                batch_dict = module(batch_dict)
        return batch_dict

    def forward(self, batch_dict):
        batch_dict = self.dense_head(self.encode(batch_dict))
        loss, tb_dict, disp_dict = self.dense_head.get_loss()
        if self.training:
            return {'loss': loss}, tb_dict, disp_dict
        ret = self.dense_head.forward_ret_dict
        tb_dict = read_scalars(dict(tb_dict, loss=loss))
        pred = {'occupancy_prob': ret['occupancy_logits'].sigmoid(), 'occupancy_logits': ret['occupancy_logits'],
                'intensity': ret['intensity'], 'query_index': ret['query_index'],
                'occupancy_target': ret['occupancy_target'], 'intensity_target': ret['intensity_target'],
                'intensity_mask': ret['intensity_mask']}
        return pred, tb_dict
