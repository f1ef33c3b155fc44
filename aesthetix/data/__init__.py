"""What an example is, and how it reaches the model.

Owns the one target mapping (targets.py: names, order, ranges, [0, 1] and
back), a run's resolved data (spec.py), photos to the model's pixels
(images.py, resize.py: NumPy and Pillow only, for scoring without
TensorFlow), the table of datasets and their TFDS builders (datasets.py) and
the tf.data input pipeline (input_pipeline.py). May import runtime and the
builders of data_builders/; never model, training, results or serving.
"""
