"""Procedural scenes and attribute scores measured from their pixels.

`render(rng, size)` draws a scene: a two-colour background, an optional
repeated pattern, a disc-shaped subject somewhere in the frame, then optional
mirroring, background blur (depth of field), horizontal motion blur and an
exposure change. `measure(image)` then scores the 11 AADB attributes from the
pixels alone (the scene's parameters are never looked at), and
`overall_score` combines them with noise. So the labels are exactly what a
network can see, and a small CNN learns them.

Images are float arrays [H, W, 3] in [0, 1]; scores are in AADB's ranges
(see `aesthetix.targets`): Repetition and Symmetry in [0, 1], the other
attributes in [-1, 1], the overall score in [0, 1].
"""

import numpy as np

# How much each attribute (in its own range) moves the overall score's logit.
OVERALL_WEIGHTS = dict(
    BalacingElements=0.3, ColorHarmony=0.5, Content=0.3, DoF=0.4, Light=0.8,
    MotionBlur=0.5, Object=0.3, Repetition=0.4, RuleOfThirds=0.5,
    Symmetry=0.6, VividColor=0.8)
OVERALL_BIAS = -0.7  # Centres the overall score near 0.5 over the scenes `render` draws.
OVERALL_NOISE = 0.15  # Std of the logit noise: the part no network can predict.
_EPS = 1e-6
_UNIPOLAR = ('Repetition', 'Symmetry')  # Scored in [0, 1]; centred before weighting.
_DETAIL_WINDOW = 7   # Box blur subtracted to keep the fine detail (pixels).
_MIN_PERIOD = 4      # Shortest repetition period looked for (pixels).
_REPETITION_FLOOR = 1e-3  # Keeps flat images (no detail) from scoring repetition.


def hsv_to_rgb(h, s, v):
  """h, s, v: arrays in [0, 1] -> rgb [..., 3] in [0, 1]."""
  h = np.asarray(h, np.float64) % 1.0
  i = np.floor(h * 6.0)
  f = h * 6.0 - i
  p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
  i = i.astype(int) % 6
  r = np.choose(i, [v, q, p, p, t, v])
  g = np.choose(i, [t, v, v, q, p, p])
  b = np.choose(i, [p, p, t, v, v, q])
  return np.stack([r, g, b], axis=-1)


def rgb_to_hsv(rgb):
  """rgb [..., 3] in [0, 1] -> (h, s, v), each [...] in [0, 1]."""
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  v = rgb.max(-1)
  c = v - rgb.min(-1)
  s = np.where(v > _EPS, c / np.maximum(v, _EPS), 0.0)
  safe_c = np.maximum(c, _EPS)
  h = np.where(v == r, ((g - b) / safe_c) % 6.0,
               np.where(v == g, (b - r) / safe_c + 2.0, (r - g) / safe_c + 4.0))
  h = np.where(c > _EPS, h / 6.0, 0.0)
  return h, s, v


def box_blur(image, k, axes=(0, 1)):
  """Mean over a k-wide window along `axes` (edge padding); k <= 1 is a no-op."""
  if k <= 1:
    return image
  out = image
  for axis in axes:
    pad = [(0, 0)] * image.ndim
    pad[axis] = (k // 2, k - 1 - k // 2)
    padded = np.pad(out, pad, mode='edge')
    c = np.cumsum(padded, axis=axis, dtype=np.float64)
    c = np.concatenate([np.zeros_like(np.take(c, [0], axis=axis)), c], axis=axis)
    n = out.shape[axis]
    out = (np.take(c, np.arange(k, k + n), axis=axis)
           - np.take(c, np.arange(0, n), axis=axis)) / k
  return out


def render(rng, size):
  """A random scene, float [size, size, 3] in [0, 1]."""
  yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
  saturation = rng.uniform(0.0, 1.0)
  base_hue = rng.uniform()
  # Harmonious schemes (same or complementary hue) or a random clash.
  offset = rng.choice([0.0, 0.5, rng.uniform()])
  top = hsv_to_rgb(base_hue, saturation * rng.uniform(0.5, 1), rng.uniform(0.3, 0.9))
  bottom = hsv_to_rgb(base_hue + offset * rng.uniform(0.8, 1), saturation,
                      rng.uniform(0.3, 0.9))
  background = top * (1 - yy[..., None]) + bottom * yy[..., None]

  if rng.uniform() < 0.4:  # Repeated stripes or checks.
    period = rng.integers(4, max(5, size // 4))
    phase = 2 * np.pi * xx * (size - 1) / period
    wave = np.sin(phase)
    if rng.uniform() < 0.5:
      wave = wave * np.sin(2 * np.pi * yy * (size - 1) / period)
    background = background + rng.uniform(0.1, 0.3) * wave[..., None]

  subject_mask = np.zeros((size, size))
  if rng.uniform() < 0.85:
    cx, cy = rng.uniform(0.15, 0.85, size=2)
    radius = rng.uniform(0.08, 0.25)
    subject_mask = np.clip((radius - np.hypot(xx - cx, yy - cy)) * size, 0, 1)
    subject = hsv_to_rgb(base_hue + rng.choice([0.0, 0.5, rng.uniform()]),
                         rng.uniform(0.3, 1.0), rng.uniform(0.4, 1.0))
    if rng.uniform() < 0.5:  # Depth of field: a soft background, a sharp subject.
      background = box_blur(background, int(rng.integers(3, 8)))
    background = background * (1 - subject_mask[..., None]) + subject * subject_mask[..., None]
  image = background

  if rng.uniform() < 0.3:  # Mirror symmetry about the vertical axis.
    half = size // 2
    image = np.concatenate([image[:, :half], image[:, :size - half][:, ::-1]], axis=1)
  if rng.uniform() < 0.3:  # Horizontal motion blur.
    image = box_blur(image, int(rng.integers(3, 10)), axes=(1,))
  image = image * rng.uniform(0.4, 1.6)  # Exposure.
  return np.clip(image, 0.0, 1.0)


def _saliency(image):
  """[H, W] >= 0: distance of each pixel's colour from the frame's border colour."""
  border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
  return np.linalg.norm(image - border.mean(0), axis=-1)


def _gradient_energy(gray, axis):
  return np.mean(np.abs(np.diff(gray, axis=axis)))


def _to_bipolar(x):
  """[0, 1] -> [-1, 1]."""
  return 2.0 * np.clip(x, 0.0, 1.0) - 1.0


def measure(image):
  """{attribute: score} from the pixels of `image` (float [H, W, 3] in [0, 1])."""
  h, w, _ = image.shape
  gray = image @ np.array([0.299, 0.587, 0.114])
  hue, sat, _ = rgb_to_hsv(image)
  sal = _saliency(image)**2  # Squared: the subject dominates, not the gradient.
  sal_total = sal.sum() + _EPS
  yy, xx = np.mgrid[0:h, 0:w]
  cx, cy = (sal * xx).sum() / sal_total / (w - 1), (sal * yy).sum() / sal_total / (h - 1)

  thirds = np.array([(x, y) for x in (1 / 3, 2 / 3) for y in (1 / 3, 2 / 3)])
  thirds_distance = np.min(np.hypot(thirds[:, 0] - cx, thirds[:, 1] - cy))
  left = sal[:, :w // 2].sum()
  balance = 1.0 - abs(left - (sal_total - left)) / sal_total

  weights = sat + _EPS
  angles = 2 * np.pi * hue
  harmony = max(np.abs(np.sum(weights * np.exp(k * 1j * angles))) / weights.sum()
                for k in (1, 2))  # One dominant hue, or two complementary ones.

  gx, gy = _gradient_energy(gray, 1), _gradient_energy(gray, 0)
  c0, c1 = h // 4, h - h // 4
  centre = np.zeros((h, w), bool)
  centre[c0:c1, c0:c1] = True
  edges = np.abs(np.diff(gray, axis=1, prepend=gray[:, :1])) + np.abs(
      np.diff(gray, axis=0, prepend=gray[:1]))
  sharp_centre, sharp_border = edges[centre].mean(), edges[~centre].mean()

  flat = sal.ravel()
  top_decile = np.sort(flat)[-max(1, flat.size // 10):].sum() / sal_total

  # Periodicity of the fine detail: autocorrelation of the high-passed image.
  detail = gray - box_blur(gray, _DETAIL_WINDOW)
  variance = np.mean(detail**2) + _REPETITION_FLOOR
  repetition = max(np.mean(detail[:, :w - s] * detail[:, s:]) / variance
                   for s in range(_MIN_PERIOD, w // 3))

  return {
      'BalacingElements': _to_bipolar(balance),
      'ColorHarmony': _to_bipolar(harmony),
      'Content': _to_bipolar(gray.std() / 0.25),
      'DoF': float(np.tanh(40.0 * (sharp_centre - sharp_border))),
      'Light': _to_bipolar(1.0 - abs(gray.mean() - 0.5) / 0.4),
      'MotionBlur': _to_bipolar(gx / (gy + _EPS)),
      'Object': _to_bipolar((top_decile - 0.1) / 0.4),
      'Repetition': float(np.clip(repetition, 0.0, 1.0)),
      'RuleOfThirds': _to_bipolar(1.0 - thirds_distance / 0.25),
      'Symmetry': float(np.clip(
          1.0 - np.mean(np.abs(image - image[:, ::-1])) / (2 * np.mean(np.abs(
              image - image.mean((0, 1)))) + _EPS), 0.0, 1.0)),
      'VividColor': _to_bipolar(sat.mean() / 0.6),
  }


def overall_score(attributes, noise):
  """Overall score in [0, 1]: a weighted sum of the attributes plus `noise`, squashed."""
  logit = OVERALL_BIAS + noise + sum(
      OVERALL_WEIGHTS[a] * (2 * float(v) - 1 if a in _UNIPOLAR else float(v))
      for a, v in attributes.items())
  return float(1.0 / (1.0 + np.exp(-logit)))
