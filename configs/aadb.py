"""Multi-task CNN on AADB (11 attributes). `--config=configs/aadb.py[:variant]`."""

from configs import common


def get_config(variant=None):
  return common.base_config('aadb', dropout=0.35, table2_output=780,
                            variant=variant)
