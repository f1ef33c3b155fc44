"""The paper's setup (Soydaner & Wagemans, section 4.2), shared by the dataset configs.

Every number the paper fixes lives here or in the dataset config that calls
`base_config`; code derives everything else (output count from the dataset's
attribute list, steps per epoch from the split sizes).
"""

import ml_collections
from ml_collections import config_dict

from configs import paper_numbers

# Keras' Adam defaults, which the paper's Keras implementation used.
KERAS_ADAM = dict(b1=0.9, b2=0.999, eps=1e-7)


def stage_config(*, epochs, batch_size, learning_rate, trainable_layers,
                 decay_steps=0, decay_rate=1.0, staircase=False):
  """One training stage: Adam, optional Keras-style exponential decay.

  `trainable_layers` names backbone layers that train in this stage; the head
  always trains. `decay_steps=0` means a constant learning rate.
  """
  return ml_collections.ConfigDict(dict(
      epochs=epochs,
      batch_size=batch_size,
      learning_rate=learning_rate,
      decay_steps=decay_steps,
      decay_rate=decay_rate,
      staircase=staircase,
      trainable_layers=tuple(trainable_layers),
      **KERAS_ADAM,
  ))


def base_config(dataset_name, *, dropout, table2_output, variant=None):
  """The multi-task CNN of the paper on `dataset_name`; `variant` picks an ablation."""
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.dataset = ml_collections.ConfigDict(dict(
      name=dataset_name,
      # TFDS data_dir; None means the TFDS default (~/tensorflow_datasets).
      data_dir=config_dict.placeholder(str),
      # Where the user placed the downloaded archives; None means
      # <data_dir>/downloads/manual, the TFDS default.
      manual_dir=config_dict.placeholder(str),
      image_size=224,  # VGG16's ImageNet input size.
      train_split='train',
      val_split='validation',
      test_split='test',
      # AADB: 127 TestNew images also appear in the official validation list.
      drop_val_test_overlap=False,
      # Quick ablations: use only the first N training examples (0: all).
      max_train_examples=0,
      # Dataset build: skip unreadable images (and report how many) instead of failing.
      skip_unreadable=False,
      # Extra keyword arguments for the TFDS builder (e.g. the synthetic set's sizes).
      builder_kwargs=config_dict.placeholder(dict),
      # tf.image.resize method from the stored size to image_size.
      resize_method='bilinear',
      # Decode and resize each image once and keep the uint8 pixels in memory
      # (AADB at 224: about 1.4 GB per process); False decodes every epoch.
      cache_decoded=True,
  ))

  c.model = ml_collections.ConfigDict(dict(
      # 'imagenet' (Keras' VGG16 weights), 'random', or a path to a converted
      # .msgpack file or a Keras .h5 weights file.
      backbone_weights='imagenet',
      tasks='multi',            # 'multi': overall + K attributes; 'overall': single task.
      output_layers='shared',   # 'shared': one K+1 sigmoid layer; 'separate': 1 + K.
      hidden_units=(128, 64),
      dropout=dropout,          # On the last hidden (64-unit) layer.
      dtype='float32',          # Compute dtype; 'bfloat16' for mixed precision.
  ))

  # Section 4.2: stage 1 trains the head on a frozen VGG16; stage 2 unfreezes
  # block4_conv2 and block4_conv3 with a decaying learning rate.
  c.stage1 = stage_config(epochs=5, batch_size=64, learning_rate=1e-3,
                          trainable_layers=())
  c.stage2 = stage_config(epochs=3, batch_size=64, learning_rate=1e-4,
                          trainable_layers=('block4_conv2', 'block4_conv3'),
                          decay_steps=125, decay_rate=0.5, staircase=False)

  # Stage 1 trains on pooled backbone features computed once per image and
  # mirror image (identical examples, flips and dropout; 2.5x less backbone work).
  # None: the device's rule (aesthetix/runtime/device_defaults.py; on every device now).
  c.feature_cache = config_dict.placeholder(bool)
  # Stage 1's pass also keeps the output of the frozen layers below stage 2's
  # (block4_conv1), and stage 2 starts from it: 47% fewer FLOPs per stage-2
  # step at 224x224, for about 1.5 MiB of disk per image and view.
  # None: the device's rule (on CPUs; not on accelerators).
  c.prefix_cache = config_dict.placeholder(bool)
  # Where the caches go; None: <workdir>/feature_cache. Shareable by ablations.
  c.feature_cache_dir = config_dict.placeholder(str)

  c.eval_batch_size = 64
  c.checkpoint_max_to_keep = 3
  c.log_every_steps = 50
  # JAX's persistent compilation cache (aesthetix/runtime/compilation_cache.py):
  # a second run of a config, or an ablation of it, reads its programs back.
  c.compilation_cache = True
  # N > 0: a jax.profiler trace of N training steps of each stage, in
  # <workdir>/tensorboard/ for TensorBoard's profile view.
  c.profile_steps = 0

  c.paper = paper_numbers.for_dataset(dataset_name, table2_output=table2_output)
  apply_variant(c, variant)
  return c


VARIANTS = {
    None: {},
    '': {},
    'multi_task': {},
    'single_task': {'model.tasks': 'overall'},
    'separate_outputs': {'model.output_layers': 'separate'},
}


def apply_variant(config, variant):
  """Applies a named ablation (`configs/aadb.py:single_task`)."""
  if variant not in VARIANTS:
    names = ', '.join(sorted(v for v in VARIANTS if v))
    raise ValueError(f'Unknown config variant {variant!r}; known: {names}.')
  for dotted, value in VARIANTS[variant].items():
    set_field(config, dotted, value)


def set_field(config, dotted, value):
  """config['a']['b']['c'] = value for dotted 'a.b.c'."""
  node = config
  *parents, leaf = dotted.split('.')
  for p in parents:
    node = node[p]
  node[leaf] = value
