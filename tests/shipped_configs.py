"""The shipped model configs pointed at test data and checked as tools/train.py checks them."""
from also_pcdet.config import cfg_from_list, cfg_from_yaml_file
from also_pcdet.config_checks import check_config
from conftest import REPO


def shipped_config(name, data_path, *overrides):
    """cfgs/also_pretrain_<name>.yaml reading `data_path`, with `--set`-style overrides."""
    cfg = cfg_from_yaml_file(REPO / 'cfgs' / f'also_pretrain_{name}.yaml')
    cfg_from_list(['DATA_CONFIG.DATA_PATH', str(data_path), *overrides], cfg)
    check_config(cfg)
    return cfg
