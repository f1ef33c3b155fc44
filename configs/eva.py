"""Multi-task CNN on EVA (4 attributes). `--config=configs/eva.py[:variant]`."""

from configs import common


def get_config(variant=None):
  return common.base_config('eva', dropout=0.25, table2_output=325,
                            variant=variant)
