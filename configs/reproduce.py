"""The paper's experiments, for `python run.py --mode=reproduce --workdir=W --seeds=0,1,2,3,4`.

Each experiment is a dataset config and its variant; every one runs once per
seed, in W/<experiment>/seed<N>/, and all runs of a dataset share one feature
cache (W/caches/<dataset>/: with ImageNet weights the frozen layers' outputs
depend on the data alone, not on the seed or the head).

  configs/reproduce.py        AADB and EVA (Tables 1, 3-6, 8-11; Fig. 9, 14)
  configs/reproduce.py:demo   the synthetic set (multi vs single vs separate),
                              no download, minutes on a CPU; EVA's are skipped

Where the datasets are: --config.datasets.aadb.manual_dir=DIR (and data_dir),
--config.datasets.eva.manual_dir=DIR, or the TFDS defaults (the reproduce mode
reads this file when no --config is given, so these need none). With one
dataset: --datasets=aadb runs its experiments and leaves out the cross tests
that need the other (aesthetix/results/selection.py).
"""

import ml_collections
from ml_collections import config_dict

# (name, dataset config module in configs/, variant of get_config).
PAPER_EXPERIMENTS = (
    ('aadb_multi', 'aadb', 'multi_task'),         # Tables 1, 3, 4, 5; Fig. 9.
    ('aadb_single', 'aadb', 'single_task'),       # Table 6.
    ('aadb_separate', 'aadb', 'separate_outputs'),  # Section 3.
    ('eva_multi', 'eva', 'multi_task'),           # Tables 8, 9, 10; Fig. 14.
    ('eva_single', 'eva', 'single_task'),         # Table 8.
)
# Table 11: (experiment, dataset it is tested on).
PAPER_CROSS = (('aadb_multi', 'eva'), ('eva_multi', 'aadb'))

DEMO_EXPERIMENTS = (
    ('demo_multi', 'demo', 'multi_task'),
    ('demo_single', 'demo', 'single_task'),
    ('demo_separate', 'demo', 'separate_outputs'),
)
DEMO_NOTE = ('The demo runs the synthetic set only (its multi-task, single-task and '
             'separate-output models); the EVA experiments (Tables 8-10) and the '
             'cross-dataset tests (Table 11) need the datasets and are skipped.')

# Claims of "similar" results hold when the difference's interval lies inside
# this margin of Spearman's rho: the size of the differences the paper draws
# conclusions from (0.7067 vs 0.7041 in Table 1).
SIMILAR_MARGIN = 0.02


def _dataset():
  """Where a dataset is (None: the TFDS defaults), and its builder's keyword
  arguments (the synthetic set's sizes, say)."""
  return ml_collections.ConfigDict(dict(manual_dir=config_dict.placeholder(str),
                                        data_dir=config_dict.placeholder(str),
                                        builder_kwargs=config_dict.placeholder(dict)))


def get_config(variant='paper'):
  c = ml_collections.ConfigDict()
  if variant == 'paper':
    c.experiments = PAPER_EXPERIMENTS
    c.cross = PAPER_CROSS
    c.seeds = (0, 1, 2, 3, 4)
    # The paper's backbone: every seed starts from the same ImageNet weights.
    c.backbone = 'imagenet'
    c.note = ''
  elif variant == 'demo':
    c.experiments = DEMO_EXPERIMENTS
    c.cross = ()
    c.seeds = (0, 1, 2)
    # No ImageNet weights here: one random VGG16 (drawn with seed 0, written to
    # W/backbone.msgpack) stands in for them, the same for every seed, so that
    # the runs share their caches as they would with ImageNet weights.
    c.backbone = 'shared_random'
    c.note = DEMO_NOTE
  else:
    raise ValueError(f'Unknown reproduction {variant!r}; known: paper, demo.')
  c.datasets = ml_collections.ConfigDict(dict(aadb=_dataset(), eva=_dataset(),
                                              demo=_dataset()))
  c.similar_margin = SIMILAR_MARGIN
  # One feature cache per dataset for all its runs; False: each run its own
  # (what the reproduction costs without sharing, bench: BENCHMARKS.md).
  c.share_caches = True
  # JAX's persistent compilation cache for the whole reproduction (every seed
  # compiles the same programs); False: compile each run's programs anew.
  c.compilation_cache = True
  # (dotted config field, value) pairs set in every experiment (tests and quick
  # looks, e.g. (('stage1.epochs', 1),)); none for the paper.
  c.overrides = ()
  return c
