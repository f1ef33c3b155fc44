"""The paper's two stages by name, as every module that reads a run refers to them.

Section 4.2: stage 1 ("Training" in Tables 5 and 10) trains the head on a
frozen VGG16; stage 2 ("Fine-tuning") unfreezes block4_conv2 and
block4_conv3. Each stage's numbers live in the config under its name.
"""

STAGES = ('stage1', 'stage2')
# The paper's words for them, in tables and figure titles.
STAGE_TITLES = {'stage1': 'Training', 'stage2': 'Fine-tuning'}


def epoch_offset(config, stage_index):
  """Epochs finished before stage `stage_index` starts."""
  return sum(config[s].epochs for s in STAGES[:stage_index])
