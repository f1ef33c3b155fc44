"""A trained model for servers and phones: SavedModel, StableHLO, and what TFLite takes.

`python run.py --mode=export --workdir=W --output=DIR --format=FMT` writes
DIR with the model, its preprocessing inside (Keras' caffe mode; the bytes
signature also decodes and resizes exactly as training did), and
DIR/aesthetix.json: the output names, their dataset scale, the input size and
how a photo must be resized. Everything is written to a temporary folder
beside DIR and renamed when complete: a failed export leaves nothing.

- saved_model: `jax2tf.convert` with native serialization (StableHLO inside
  an XlaCallModule op; JAX's maintained path in 0.10, the graph serialization
  having been removed) in a tf.Module with two serving signatures:
  `serving_default` on uint8 images [batch, S, S, 3] at the trained size, and
  `serving_bytes` on encoded JPEG or PNG bytes [batch] (decoded and resized in
  the graph as training decoded and resized its images). Both return
  {output name: [batch] float32} in the dataset's scale. TF Serving loads it.
- stablehlo: a `jax.export` artifact (uint8 [batch, S, S, 3] -> [batch,
  outputs] in the dataset's scale, batch symbolic) for JAX servers:
  `jax.export.deserialize(open(f, 'rb').read()).call(images)`. JAX promises to
  run such an artifact for at least 6 months after the JAX that wrote it
  (backward compatibility of serialized StableHLO; aesthetix.json names the
  version that wrote it).
- tflite: the TFLite converter of the pinned TensorFlow run on the SavedModel
  (TensorFlow 2.21 lowers the StableHLO inside to TFLite's own ops), float32,
  or with float16 or dynamic-range int8 weights (`--quantize`). A TensorFlow
  whose converter cannot convert it stops the export with that, naming what
  works instead.
"""

import contextlib
import datetime
import os
import shutil
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from aesthetix.data import resize
from aesthetix.runtime import errors
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.serving import scorer as scorer_lib

FORMATS = ('saved_model', 'stablehlo', 'tflite')
# TFLite's post-training quantizations (float32 when none).
QUANTIZATIONS = ('float16', 'dynamic_int8')
METADATA = 'aesthetix.json'
STABLEHLO_FILE = 'model.stablehlo'
TFLITE_FILE = 'model.tflite'
# jax.export's promise for serialized artifacts, in days after the writing JAX.
BACKWARD_COMPATIBILITY_DAYS = 180


class ExportError(errors.UserError):
  """The export cannot be made as asked; nothing was written."""


def scoring_function(scorer):
  """(params, uint8 [b, S, S, 3]) -> float32 [b, outputs] in the dataset's scale."""
  model, spec, n = scorer.model, scorer.plan.data.targets, len(scorer.names)

  def score(params, images):
    unit = model.apply({'params': params}, images, train=False)[:, :n]
    return spec.from_unit(unit)

  return score


def host_params(scorer):
  return jax.tree_util.tree_map(np.asarray, jax.device_get(scorer.params))


def serving_function(scorer):
  """uint8 [b, S, S, 3] -> float32 [b, outputs] in the dataset's scale (params baked in)."""
  score, params = scoring_function(scorer), host_params(scorer)
  return lambda images: score(params, images)


def metadata(scorer, fmt, extra=None):
  data = scorer.plan.data
  lo, hi = data.targets.bounds(len(scorer.names))
  return dict(
      format=fmt, outputs=list(scorer.names),
      ranges={n: [float(a), float(b)] for n, a, b in zip(scorer.names, lo, hi)},
      dataset=data.name, image_size=scorer.image_size,
      input=f'uint8 RGB [batch, {scorer.image_size}, {scorer.image_size}, 3], 0-255',
      resize=(f'tf.image.resize(image, [{scorer.image_size}, {scorer.image_size}], '
              f'method={data.resize_method!r}), rounded and '
              'clipped to uint8 (aesthetix.data.resize); the bytes '
              'signature does it inside the SavedModel'),
      preprocessing='inside the model: Keras caffe mode (RGB to BGR, ImageNet means '
                    'subtracted)',
      jax_version=jax.__version__, written=datetime.date.today().isoformat(),
      **(extra or {}))


def _stablehlo(scorer, out):
  from jax import export as jax_export  # pylint: disable=g-import-not-at-top
  s = scorer.image_size
  batch = jax_export.symbolic_shape('b')[0]
  exported = jax_export.export(jax.jit(serving_function(scorer)))(
      jax.ShapeDtypeStruct((batch, s, s, 3), jnp.uint8))
  with open(os.path.join(out, STABLEHLO_FILE), 'wb') as f:
    f.write(exported.serialize())
  return dict(file=STABLEHLO_FILE, calling_convention_version=exported.calling_convention_version,
              compatible_until_at_least=(datetime.date.today() + datetime.timedelta(
                  days=BACKWARD_COMPATIBILITY_DAYS)).isoformat(),
              load="jax.export.deserialize(open(path, 'rb').read()).call(images)")


def decode_for_serving(encoded, size, method):
  """Encoded JPEG / PNG bytes -> uint8 [size, size, 3], as training read images:
  JPEG decoded with the accurate IDCT (as Pillow decodes), transparency on
  white, then `resize.tf_resize`. EXIF orientation is not applied
  in the graph (predict applies it on the host)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  def jpeg():
    return tf.io.decode_jpeg(encoded, channels=3, dct_method='INTEGER_ACCURATE')

  def other():
    rgba = tf.cast(tf.io.decode_image(encoded, channels=4, expand_animations=False),
                   tf.float32)
    alpha = rgba[..., 3:] / 255.0
    on_white = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
    return tf.cast(tf.clip_by_value(tf.round(on_white), 0, 255), tf.uint8)

  image = tf.cond(tf.io.is_jpeg(encoded), jpeg, other)
  image.set_shape([None, None, 3])
  return resize.tf_resize(image, size, method)


def _saved_model(scorer, out):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top
  s, names = scorer.image_size, scorer.names
  method = scorer.plan.data.resize_method
  # The weights as TF variables (saved in variables/, as TF Serving expects),
  # the computation as StableHLO.
  converted = jax2tf.convert(scoring_function(scorer), native_serialization=True,
                             polymorphic_shapes=[None, '(b, _, _, _)'], with_gradient=False)
  module = tf.Module()
  module.params = tf.nest.map_structure(tf.Variable, host_params(scorer))

  @tf.function(autograph=False,
               input_signature=[tf.TensorSpec([None, s, s, 3], tf.uint8, name='images')])
  def serving_default(images):
    scores = converted(module.params, images)
    return {name: scores[:, i] for i, name in enumerate(names)}

  @tf.function(autograph=False,
               input_signature=[tf.TensorSpec([None], tf.string, name='image_bytes')])
  def serving_bytes(image_bytes):
    pixels = tf.map_fn(lambda e: decode_for_serving(e, s, method), image_bytes,
                       fn_output_signature=tf.TensorSpec([s, s, 3], tf.uint8))
    return serving_default(pixels)

  module.serving_default, module.serving_bytes = serving_default, serving_bytes
  tf.saved_model.save(module, out, signatures={'serving_default': serving_default,
                                               'serving_bytes': serving_bytes})
  return dict(signatures={
      'serving_default': f'images: uint8 [batch, {s}, {s}, 3] -> {{output: [batch]}}',
      'serving_bytes': 'image_bytes: string [batch] of JPEG or PNG files -> {output: [batch]}'},
              load='tf.saved_model.load(DIR).signatures["serving_default"](images=...)')


def _tflite(scorer, out, quantize=None):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as saved:
    _saved_model(scorer, saved)
    converter = tf.lite.TFLiteConverter.from_saved_model(saved, ['serving_default'])
    if quantize:  # Weights stored in 16 or 8 bits; float16 keeps float32 compute on CPUs.
      converter.optimizations = [tf.lite.Optimize.DEFAULT]
      if quantize == 'float16':
        converter.target_spec.supported_types = [tf.float16]
    try:
      flat = converter.convert()
    except Exception as e:  # pylint: disable=broad-except
      first = (str(e).strip().splitlines() or [type(e).__name__])
      detail = next((line for line in first if 'XlaCallModule' in line or 'not supported'
                     in line), first[0])[:300]
      raise ExportError(
          f'The TFLite converter of TensorFlow {tf.__version__} cannot convert this model '
          f'({detail.strip()}): JAX exports it as StableHLO inside an XlaCallModule op, '
          'which TFLite does not run. Use --format=saved_model (TF Serving, or TensorFlow '
          'on a device) or --format=stablehlo (a JAX server); nothing was written.') from e
  with open(os.path.join(out, TFLITE_FILE), 'wb') as f:
    f.write(flat)
  return dict(file=TFLITE_FILE, quantization=quantize or 'none (float32)',
              signature='serving_default: images uint8 [batch, S, S, 3] -> {output: [batch]}',
              load="ai_edge_litert.interpreter.Interpreter(model_path=...) or "
                   "tf.lite.Interpreter; get_signature_runner('serving_default')")


_WRITERS = {'saved_model': _saved_model, 'stablehlo': _stablehlo}


def export(workdir, output, fmt, overwrite=False, quantize=None):
  """Writes `output` in format `fmt` from the model of `workdir`; returns the metadata."""
  if fmt not in FORMATS:
    raise ExportError(f'--format={fmt} is not one of {", ".join(FORMATS)}.')
  if quantize and (fmt != 'tflite' or quantize not in QUANTIZATIONS):
    raise ExportError(f'--quantize={quantize} applies to --format=tflite only, as one of '
                      f'{", ".join(QUANTIZATIONS)}.')
  output = os.path.abspath(output)
  if os.path.exists(output) and not overwrite:
    raise ExportError(f'{output} exists: give a new --output, or --overwrite to replace it.')
  scorer = scorer_lib.Scorer.from_workdir(workdir)
  parent = os.path.dirname(output)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f'.{os.path.basename(output)}.tmp-', dir=parent)
  try:
    extra = (_tflite(scorer, tmp, quantize) if fmt == 'tflite'
             else _WRITERS[fmt](scorer, tmp))  # Only TFLite takes a quantization.
    info = metadata(scorer, fmt, extra)
    with open(os.path.join(tmp, METADATA), 'w') as f:
      f.write(workdir_lib.dumps(info, indent=2))
    if os.path.exists(output):
      shutil.rmtree(output)
    os.replace(tmp, output)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      shutil.rmtree(tmp)
    raise
  return info
