"""Numbers reported by Soydaner & Wagemans, kept beside the configs that reproduce them.

Every table of the paper (arXiv 2305.09373), as printed, rounding included,
transcribed from shared/PAPER_TABLES.md. Reports, the audit and the
reproduction print these next to a run's own numbers; nothing in the library
treats them as targets to hard-code. Output names are aesthetix's
(`aesthetix.targets`): AADB's 'score' and attribute names as its label files
spell them, EVA's 'score', 'visual' (light and color), 'composition'
(composition and depth), 'quality' and 'semantic' (semantics).
"""

import ml_collections

# Table 1: the overall score on AADB's test split, previous multi-task networks.
TABLE1 = (
    ('Kong et al. 2016', 0.6782),
    ('Hou et al. 2017', 0.6889),
    ('Pan et al. 2019, multi-task network', 0.6927),
    ('Pan et al. 2019, with adversarial learning', 0.7041),
    ('this paper', 0.7067),
)

# Table 2: parameters of the pre-trained network, the fully-connected layers and
# the output layer, for this paper and for Pan et al. (ResNet-50 based).
TABLE2_OURS = dict(pretrained=14_714_688, fully_connected=73_920)
TABLE2_OUTPUT = dict(aadb=780, eva=325)  # Dense 64 -> 12 and 64 -> 5.
TABLE2_PAN = dict(pretrained=23_587_712, fully_connected=1_114_752, output=1_548)

# Table 3: AADB test split (n = 1,000), ground-truth overall score by interval:
# (interval as printed, low, high, frequency, share). Intervals are [low, high),
# the last one closed; the first is narrower, as printed.
TABLE3 = (
    ('0.05-0.10', 0.05, 0.10, 4, 0.004),
    ('0.10-0.20', 0.10, 0.20, 35, 0.035),
    ('0.20-0.30', 0.20, 0.30, 79, 0.079),
    ('0.30-0.40', 0.30, 0.40, 147, 0.147),
    ('0.40-0.50', 0.40, 0.50, 152, 0.152),
    ('0.50-0.60', 0.50, 0.60, 165, 0.165),
    ('0.60-0.70', 0.60, 0.70, 224, 0.224),
    ('0.70-0.80', 0.70, 0.80, 76, 0.076),
    ('0.80-0.90', 0.80, 0.90, 103, 0.103),
    ('0.90-1.00', 0.90, 1.00, 15, 0.015),
)
TABLE3_TEXT = dict(truth_range=(0.05, 1.0), prediction_range=(0.26, 0.90),
                   below_prediction_range=39, above_prediction_range=15,
                   share_inside='about 95%')

# Table 4: human consistency on AADB (Kong et al. 2016) against the model:
# (images rated per rater, raters, rho).
TABLE4 = (
    ('(0, 100)', 190, 0.6738),
    ('[100, 200)', 65, 0.7013),
    ('[200, inf)', 42, 0.7112),
    ('this paper', None, 0.7067),
)

# Table 5: AADB test, rho per output after stage 1 ("Training") and stage 2
# ("Fine-tuning"), in the paper's row order.
TABLE5 = {
    'Content': (0.546, 0.593),
    'VividColor': (0.617, 0.669),
    'Object': (0.600, 0.639),  # Printed as "Object (emphasis)".
    'ColorHarmony': (0.437, 0.484),
    'DoF': (0.466, 0.497),
    'Light': (0.396, 0.445),
    'BalacingElements': (0.264, 0.267),
    'RuleOfThirds': (0.216, 0.235),
    'MotionBlur': (0.098, 0.109),
    'Symmetry': (0.194, 0.177),
    'Repetition': (0.322, 0.355),
    'score': (0.650, 0.707),
}

# Table 6: single task vs multi-task, AADB test, overall score.
TABLE6 = {'Pan et al. 2019': dict(single=0.6833, multi=0.6927),
          'this paper': dict(single=0.6890, multi=0.7067)}

# Table 7: EVA, per-image mean scores over the whole dataset: (minimum, maximum).
TABLE7 = {'score': (1.764, 9.032), 'visual': (1.636, 3.657),
          'composition': (1.558, 3.656), 'quality': (1.441, 3.593),
          'semantic': (1.735, 3.645)}

# Table 8: EVA test (570 images), overall score: (stage 1, stage 2).
TABLE8 = {'multi': (0.600, 0.695), 'single': (0.604, 0.675)}

# Table 9: EVA test split (n = 570), ground-truth overall score by interval,
# as Table 3 (the first and last intervals narrower, as printed).
TABLE9 = (
    ('1.70-2.00', 1.70, 2.00, 0, 0.0),
    ('2.00-3.00', 2.00, 3.00, 3, 0.005),
    ('3.00-4.00', 3.00, 4.00, 16, 0.028),
    ('4.00-5.00', 4.00, 5.00, 64, 0.112),
    ('5.00-6.00', 5.00, 6.00, 144, 0.252),
    ('6.00-7.00', 6.00, 7.00, 231, 0.405),
    ('7.00-8.00', 7.00, 8.00, 100, 0.175),
    ('8.00-9.00', 8.00, 9.00, 11, 0.019),
    ('9.00-9.50', 9.00, 9.50, 1, 0.001),
)
TABLE9_TEXT = dict(truth_range=(2.46, 9.0), prediction_range=(5.09, 8.13),
                   below_prediction_range=83, share_inside='about 85%')

# Table 10: EVA test, rho per attribute: (stage 1, stage 2).
TABLE10 = {'visual': (0.610, 0.709), 'composition': (0.571, 0.655),
           'quality': (0.463, 0.548), 'semantic': (0.586, 0.659)}

# Table 11: cross-dataset, overall score: {trained on: {tested on: rho}}.
TABLE11 = {'aadb': {'aadb': 0.707, 'eva': 0.321},
           'eva': {'aadb': 0.441, 'eva': 0.695}}

# Numbers the text gives for its figures.
FIG3 = dict(train_images=8_458, MotionBlur_negative=700, MotionBlur_positive=397,
            Repetition_positive=1_683, Symmetry_positive=771)
# Fig. 9 (AADB): rank correlation with the overall score; the truth is of the
# whole dataset, the predictions of the test split.
FIG9 = dict(truth={'Content': 0.70, 'Light': 0.58},
            prediction={'Light': 0.96, 'Content': 0.95},
            prediction_top5=('Light', 'Content', 'ColorHarmony', 'VividColor',
                             'RuleOfThirds'),
            prediction_lowest=('MotionBlur', 'Symmetry', 'Repetition'))
# Fig. 14 (EVA): rank correlation with the overall score; quality lowest in both.
FIG14 = dict(truth={'composition': 0.89, 'semantic': 0.87},
             prediction={'composition': 0.97, 'semantic': 0.95},
             lowest='quality')

# Section 4.2: what the paper does not state, and so what a run must choose.
LEFT_OPEN = (
    ('image_size', 'the input image size (AADB ships 256x256; 224 is VGG16\'s ImageNet size)'),
    ('resize_method', 'the resize method'),
    ('staircase', 'whether the learning-rate decay is a staircase'),
    ('eps', "Adam's epsilon (Keras' default 1e-7 if Keras defaults were used)"),
    ('eva_split', 'how the EVA split was drawn'),
    ('eva_attribute_scale', 'how attributes were scaled for EVA'),
    ('val_test_overlap', 'whether the 127 AADB test images that also occur in validation '
                         'were used for model selection'),
)

# Overall aesthetic score, Spearman's rho on the test set (multi-task model).
OVERALL_RHO = dict(aadb=TABLE1[-1][1], eva=TABLE8['multi'][1])


def for_dataset(name, *, table2_output):
  """The paper's numbers for `name` as a ConfigDict (overall_rho 0.0 for the demo set)."""
  return ml_collections.ConfigDict(dict(
      table2=dict(pretrained=TABLE2_OURS['pretrained'],
                  fully_connected=TABLE2_OURS['fully_connected'],
                  output=table2_output),
      table2_pan=dict(TABLE2_PAN),
      overall_rho=OVERALL_RHO.get(name, 0.0),
  ))
