"""The networks: VGG16 with Keras' layer names, the paper's multi-task head, and
their weights.

Owns vgg16.py (the backbone, Keras' caffe preprocessing), multitask.py (the
head, the whole model, its `ModelSpec`, initial weights), keras_weights.py
(Keras' weight files to Flax params) and audit.py (Table 2's counts). May
import runtime; never data, training, results or serving.
"""
