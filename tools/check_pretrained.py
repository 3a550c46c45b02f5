"""Report what OpenPCDet's `--pretrained_model` would load from a backbone file into a detector.

    python tools/check_pretrained.py --ckpt pretrained_backbone.pth --detector_cfg cfgs/kitti_models/second.yaml

Prints the loader's own lines (each `Not updated weight` and `==> Done (loaded N/M)`); exits 1 when any
VFE / BACKBONE_3D / MAP_TO_BEV / BACKBONE_2D weight would keep its random initialisation.
"""
import argparse

from also_pcdet.detector_config import load_detector_cfg
from also_pcdet.engine.cli import add_debug_flag, run_main
from also_pcdet.engine.pretrained_check import SECTIONS, check_pretrained

SHOWN = 10  # reasons listed before "... and N more"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_debug_flag(parser)
    parser.add_argument('--ckpt', required=True, help='the file passed to --pretrained_model')
    parser.add_argument('--detector_cfg', required=True, help='an OpenPCDet detector config, e.g. '
                        'OpenPCDet/tools/cfgs/kitti_models/second.yaml')
    args = parser.parse_args(argv)

    try:
        report = check_pretrained(args.ckpt, load_detector_cfg(args.detector_cfg))
    except (FileNotFoundError, KeyError, ValueError) as err:  # unreadable file, config, or a module not built here
        raise SystemExit(f'check_pretrained: {err}') from err
    print('\n'.join(report.log))
    print(f"M = {report.total}: the keys of the detector's {', '.join(SECTIONS)} and its global_step buffer; "
          f"the whole detector's M adds its head keys, which no backbone file fills")
    if report.ok:
        print(f'OK: every backbone weight loads ({report.loaded}/{report.total})')
        return 0
    print(f'FAIL: {len(report.random)} backbone weights would keep their random initialisation:')
    for key, why in list(report.random.items())[:SHOWN]:
        print(f'  {key}: {why}')
    if len(report.random) > SHOWN:
        print(f'  ... and {len(report.random) - SHOWN} more')
    if report.hint:
        print(f'hint: {report.hint}')
    return 1


if __name__ == '__main__':
    run_main(main)
