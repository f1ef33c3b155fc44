"""Every documented command runs as written (issue 24): each shell command of
README.md's ```bash blocks and each usage line of run.py's docstring.

The commands run in document order from a sandbox that stands where the
README expects to be run (the repository's root: configs/, tests/, run.py ...
linked in), with the data where each command looks for it: TFDS's default
data dir (`~/tensorflow_datasets`) is a temporary one whose manual dir holds
tiny AADB and EVA downloads, `/data/aadb` and `/data/eva` are two more
download folders, Keras' cache holds a VGG16 weights file in ImageNet's
layout (random values), `PHOTOS` and `IN.h5` are files of the sandbox, and `W`
is the suite's trained workdir for the modes that read one. Each command gets
the tiny-size overrides appended (32 px, 1 + 1 epochs, one seed) and must exit
0. `python run.py` commands run in this process (run.py's own parse and main,
sys.argv as typed), which saves each one JAX's and TensorFlow's start-up;
other commands run in a shell. A command that cannot run here is in NOT_RUN,
with the reason, in one place; a command added to the README later is run by
this test, or the test fails until it says how.

EVA's split needs builder arguments that no flag takes (570 test images by
default), so EVA is built once, tiny, where TFDS keeps it; AADB is built by
the first command that reads it, from its downloads.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import tensorflow_datasets as tfds

from aesthetix.model import keras_weights
from bench import keras_reference
from data_builders.eva import eva_dataset_builder
from tests import fixtures_data
from tests import run_py
from tests import tiny
from tests import trained_workdir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, 'README.md')
RUN_PY = os.path.join(REPO, 'run.py')
# What a sandbox links from the repository, to stand where the commands are typed.
LINKED = ('aesthetix', 'bench', 'configs', 'data_builders', 'tests', 'run.py',
          'requirements.txt', 'requirements-test.txt')
# Commands that are not run here: (how the command starts, why).
NOT_RUN = (
    ('python3 -m venv ', 'makes a virtual environment: .ci/run runs the README\'s test command '
                         'in a fresh one'),
    ('. .venv/bin/activate', 'activates that virtual environment'),
    ('pip install ', 'installs packages from the package index'),
    ('python -m pytest', 'the test suite itself'),
    ('python -c "import keras; keras.applications.VGG16(weights=\'imagenet\'',
     'downloads ImageNet\'s weights from the internet'),
    ('for i in 0 1; do', 'two processes joined at a fixed port (12355) on a machine that others '
                         'share; tests/multiprocess_test.py launches run.py with the same three '
                         'flags on a free port'),
    ('bash bench/device_check.sh', 'the GPU check needs a GPU; tests/device_check_test.py runs '
                                   'its CPU rehearsal'),
    ('DEVICE_CHECK_', 'the GPU check\'s rehearsal: tests/device_check_test.py runs it'),
    ('tensorboard --logdir', 'a web server that runs until it is stopped; run_timing_test reads '
                             'the event files with TensorBoard\'s own reader'),
    ('python run.py --config=configs/rated_photos.py:few_photos',
     'starts from the quick start\'s 64 px demo workdir (minutes of training); '
     'transfer_test runs the same config with --config.init_from through run.py at 32 px'),
    ('for seed in 1 2; do python run.py --config=configs/rated_photos.py',
     'two more seeds of the rated-photos example; ensemble_test trains a second member '
     'and scores the ensemble through run.py'),
    ('python run.py --mode=predict --workdir=workdirs/mine,',
     'the ensemble of that loop\'s workdirs; ensemble_test runs --mode=predict with '
     '--workdir=W1,W2 and run.py\'s usage line W1,W2,W3 runs here'),
)
# Documented commands that another test runs as written, with what it checks
# there: (file, how the command starts) -> the test.
RUN_ELSEWHERE = {
    ('README.md', 'python run.py --mode=reproduce --workdir=W --seeds=0,1,2,3,4 --config.'):
        'reproduce_test.py: the whole paper over two seeds, killed and resumed',
    ('run.py', 'python run.py --mode=reproduce --workdir=W --seeds=0,1,2,3,4'):
        'reproduce_test.py: the resume of the README\'s reproduction',
    ('README.md', 'python run.py --mode=reproduce --workdir=W --datasets=aadb'):
        'reproduce_selection_test.py: AADB alone, EVA absent',
    ('run.py', 'python run.py --mode=reproduce --workdir=W --datasets=aadb'):
        'reproduce_selection_test.py: read back after the README\'s --datasets=aadb',
}
# The README's block of commands on a folder of rated photos, which
# rated_photos_test runs as written (its module fixture).
RATED_BLOCK_START = 'python -c "from tests import fixtures_data; fixtures_data.make_rated('
RATED_BLOCK_TEST = ('rated_photos_test.py: the README\'s block on the tests\' example folder, '
                    'every command')
# Appended to every training command, and set in every experiment of a reproduction.
TINY = {'dataset.image_size': tiny.IMAGE_SIZE, 'stage1.epochs': 1, 'stage2.epochs': 1,
        'stage1.batch_size': tiny.BATCH_SIZE, 'stage2.batch_size': tiny.BATCH_SIZE,
        'eval_batch_size': tiny.BATCH_SIZE, 'stage2.decay_steps': 2,
        'checkpoint_max_to_keep': 1}
TINY_SEEDS = '--seeds=0'
# Modes that read a trained workdir: their W is (a copy of) the suite's one.
READS_A_WORKDIR = ('predict', 'gradcam', 'report', 'evaluate', 'export')
# Sizes of the tiny downloads: global batches of 8 fit the training splits.
AADB_SIZES = dict(n_train=8, n_val=4, n_test=6, n_overlap=1)
EVA_SIZES = dict(n_images=16, n_unvoted=1, parts=2)
EVA_SPLIT = dict(num_test=4, num_validation=4)
PHOTOS = 3


# ------------------------------------------------------------- the commands


def strip_comment(line):
  """`line` without a shell comment (a # outside quotes, at a word's start)."""
  quote = None
  for i, c in enumerate(line):
    if quote:
      quote = None if c == quote else quote
    elif c in '\'"':
      quote = c
    elif c == '#' and (i == 0 or line[i - 1].isspace()):
      return line[:i].rstrip()
  return line.rstrip()


def logical_lines(lines):
  """(first line number, text) of `lines` [(number, text)], continued lines joined
  and a `for ...; do` loop taken whole (to its `done`)."""
  out, current, start = [], '', None
  for number, text in lines:
    text = strip_comment(text)
    if not text.strip() and not current:
      continue
    start = number if not current else start
    current = f'{current} {text.strip()}' if current else text.strip()
    if current.endswith('\\'):
      current = current[:-1].rstrip()
      continue
    if current.startswith('for ') and not re.search(r'\bdone\b', current):
      continue
    out.append((start, current))
    current = ''
  return out


def readme_blocks(text):
  """Each ```bash block of the README: [(README.md:line, command)], `&&` chains split."""
  blocks, block = [], None
  for number, line in enumerate(text.splitlines(), 1):
    if block is None:
      if line.strip() == '```bash':
        block = []
      continue
    if line.strip() == '```':
      commands = []
      for start, command in logical_lines(block):
        parts = [command] if command.startswith('for ') else command.split(' && ')
        commands += [(f'README.md:{start}', part.strip()) for part in parts]
      blocks.append(commands)
      block = None
    else:
      block.append((number, line))
  return blocks


def readme_commands(text):
  """(README.md:line, command) of each command of the ```bash blocks."""
  return [c for block in readme_blocks(text) for c in block]


def readme_block(start):
  """The commands of the README's block that holds the command beginning with `start`."""
  blocks = [b for b in readme_blocks(open(README, encoding='utf-8').read())
            if any(c.startswith(start) for _, c in b)]
  assert len(blocks) == 1, (start, blocks)
  return [c for _, c in blocks[0]]


def usage_commands(docstring):
  """(run.py:line, command) of each usage line of run.py's docstring; a line with
  an optional [part] gives the command without it and with it."""
  commands = []
  for number, line in enumerate(docstring.splitlines(), 1):
    line = strip_comment(line).strip()
    if not line.startswith('python run.py'):
      continue
    optional = re.findall(r'\[([^\]]*)\]', line)
    bare = re.sub(r'\s*\[[^\]]*\]', '', line)
    commands.append((f'run.py:{number}', bare))
    commands += [(f'run.py:{number}', f'{bare} {part}') for part in optional]
  return commands


def documented_commands():
  import run  # pylint: disable=g-import-not-at-top
  return (readme_commands(open(README, encoding='utf-8').read())
          + usage_commands(run.__doc__))


def first_source(command):
  """Where `command` is first documented (a repeated command runs once)."""
  return next(s for s, c in COMMANDS if c == command)


def documented(where, start):
  """The one command of file `where` (README.md, run.py) that begins with `start`
  (for the tests that run a documented command of their own, see RUN_ELSEWHERE)."""
  found = [c for s, c in COMMANDS if s.startswith(f'{where}:') and c.startswith(start)]
  assert len(found) == 1, (where, start, found)
  return found[0]


COMMANDS = documented_commands()


def run_elsewhere(source, command):
  if source.startswith('README.md:') and command in readme_block(RATED_BLOCK_START):
    return RATED_BLOCK_TEST
  return next((test for (where, start), test in RUN_ELSEWHERE.items()
               if source.startswith(f'{where}:') and documented(where, start) == command), None)


def not_run_reason(command):
  return next((why for start, why in NOT_RUN if command.startswith(start)), None)


# ------------------------------------------------------------------ fixtures


def link_repository(sandbox):
  sandbox.mkdir()
  for name in LINKED:
    os.symlink(os.path.join(REPO, name), sandbox / name)


def build_tiny_eva(data_dir, manual_dir):
  """EVA with a split that fits its 16 images, where TFDS keeps it."""
  builder = eva_dataset_builder.Builder(data_dir=str(data_dir), **EVA_SPLIT)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))


@pytest.fixture(scope='module')
def sandbox(tmp_path_factory):
  """Where the commands run, and the places they read (see the module's docstring)."""
  tmp = tmp_path_factory.mktemp('readme')
  root = tmp / 'repo'
  link_repository(root)
  tfds_home = tmp / 'tensorflow_datasets'
  manual = tfds_home / 'downloads' / 'manual'  # TFDS' default manual dir: both datasets.
  fixtures_data.make_aadb(manual, **AADB_SIZES)
  fixtures_data.make_eva(manual, **EVA_SIZES)
  data = {'/data/aadb': tmp / 'data' / 'aadb', '/data/eva': tmp / 'data' / 'eva'}
  fixtures_data.make_aadb(data['/data/aadb'], **AADB_SIZES)
  fixtures_data.make_eva(data['/data/eva'], **EVA_SIZES)
  build_tiny_eva(tfds_home, data['/data/eva'])
  # The demo's synthetic set, as tiny as the shared trained workdir's, already built.
  trained_config = trained_workdir.config(tmp_path_factory)
  shutil.copytree(os.path.join(trained_config.dataset.data_dir, 'synthetic_aesthetics'),
                  tfds_home / 'synthetic_aesthetics')
  keras_home = tmp / 'keras'
  weights = keras_home / 'models' / keras_weights.VGG16_NOTOP_FILE
  weights.parent.mkdir(parents=True)
  keras_reference.write_legacy_notop_h5(keras_reference.keras_vgg16(tiny.IMAGE_SIZE), weights)
  os.symlink(weights, root / keras_weights.VGG16_NOTOP_FILE)  # convert_weights reads it here.
  os.symlink(weights, root / 'IN.h5')
  (root / 'PHOTOS').mkdir()
  for i in range(PHOTOS):
    (root / 'PHOTOS' / f'{i}.jpg').write_bytes(fixtures_data.jpeg_bytes(i, size=40))
  _, workdir = trained_workdir.get(tmp_path_factory)
  trained = tmp / 'trained'
  trained_workdir.copy(workdir, trained)
  return dict(root=root, tfds_home=tfds_home, keras_home=keras_home, data=data,
              trained=trained, fresh=iter(range(1000)))


@pytest.fixture
def in_sandbox(sandbox, monkeypatch):
  """The sandbox as the current folder, TFDS' default data dir and Keras' home."""
  monkeypatch.chdir(sandbox['root'])
  monkeypatch.setattr(tfds.core.constants, 'DATA_DIR', str(sandbox['tfds_home']))
  monkeypatch.setenv('TFDS_DATA_DIR', str(sandbox['tfds_home']))
  monkeypatch.setenv('KERAS_HOME', str(sandbox['keras_home']))
  return sandbox


# ------------------------------------------------------------------- running


def mode_of(args):
  return next((a.split('=', 1)[1] for a in args if a.startswith('--mode=')), 'train')


def placed(args, sandbox):
  """`args` with the placeholders mapped to the sandbox's places."""
  mode, out = mode_of(args), []
  for arg in args:
    name, eq, value = arg.partition('=')
    if eq and value == 'W':
      value = (str(sandbox['trained']) if mode in READS_A_WORKDIR else
               'W_reproduce' if mode == 'reproduce' else
               readme_workdir(args) or f'W_{next(sandbox["fresh"])}')
    elif eq and mode in READS_A_WORKDIR and re.fullmatch(r'W\d+(,W\d+)+', value):
      # An ensemble's members: the suite's trained workdir, once per member.
      value = ','.join([str(sandbox['trained'])] * len(value.split(',')))
    elif eq and value == 'DIR':
      value = f'DIR_{next(sandbox["fresh"])}'
    elif eq and value in sandbox['data']:
      value = str(sandbox['data'][value])
    out.append(f'{name}{eq}{value}')
  return out


def readme_workdir(args):
  """The workdir of the README's training command with the same --config as
  `args`, or None: a usage line of run.py abbreviates it, and run on the
  README's workdir it is the documented resume of a finished run."""
  config = [a for a in args if a.startswith('--config=')]
  for source, command in COMMANDS:
    tokens = command.split()
    if (source.startswith('README.md:') and tokens[:2] == ['python', 'run.py']
        and mode_of(tokens) == 'train' and config and config[0] in tokens):
      return next(t.split('=', 1)[1] for t in tokens if t.startswith('--workdir='))
  return None


def tiny_args(args):
  """What makes the command tiny: appended, so that it wins over the command's own."""
  mode = mode_of(args)
  if mode == 'train' and any(a.startswith('--config=') for a in args):
    return [f'--config.{k}={v}' for k, v in TINY.items()]
  if mode == 'reproduce':
    return [TINY_SEEDS, f'--config.overrides={tuple(TINY.items())!r}']
  return []


def run_in_shell(tokens, root):
  """(exit status, stderr) of a command other than run.py, in folder `root`."""
  if tokens[0] == 'python':
    tokens = [sys.executable, *tokens[1:]]
  result = subprocess.run(tokens, cwd=root, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, JAX_PLATFORMS='cpu'))
  return result.returncode, result.stderr


def run_command(command, root, monkeypatch, place=lambda args: args, where='?'):
  """(exit status, stderr) of a documented `command` run from `root` (a linked
  sandbox, the current folder): run.py in this process with `place`d
  placeholders and the tiny sizes appended, `python -c` in a shell."""
  tokens = shlex.split(command)
  if tokens[:2] == ['python', 'run.py']:
    args = place(tokens[2:])
    return run_py.in_process(args + tiny_args(args), monkeypatch)
  if tokens[:2] == ['python', '-c']:
    return run_in_shell(tokens, root)
  raise AssertionError(f'{where}: this test has no way to run {command!r}; add it to '
                       'NOT_RUN with the reason, or teach the test to run it.')


@pytest.mark.parametrize('source, command', COMMANDS, ids=[f'{s} {c[:60]}' for s, c in COMMANDS])
def test_the_documented_command_runs_as_written(source, command, in_sandbox, monkeypatch):
  why = not_run_reason(command)
  if why:
    pytest.skip(f'not run here: {why}')
  if first_source(command) != source:
    pytest.skip(f'the same command as {first_source(command)}, run there')
  elsewhere = run_elsewhere(source, command)
  if elsewhere:
    pytest.skip(f'run as written by {elsewhere}')
  code, stderr = run_command(command, in_sandbox['root'], monkeypatch,
                             lambda args: placed(args, in_sandbox), source)
  assert code == 0, f'{source}: {command}\n{stderr[-4000:]}'
  assert not re.search(r'^error: ', stderr, re.M), stderr[-4000:]


def test_the_commands_are_found_and_every_reason_not_to_run_one_is_used():
  """The extraction finds the commands a reader sees (a broken parse would make
  the test above pass on nothing), and NOT_RUN lists only commands that exist."""
  commands = [c for _, c in COMMANDS]
  assert sum(c.startswith('python run.py') for c in commands) >= 25, commands
  assert ('python run.py --mode=reproduce --workdir=W --seeds=0,1,2,3,4 '
          '--config.datasets.aadb.manual_dir=/data/aadb '
          '--config.datasets.eva.manual_dir=/data/eva') in commands
  assert 'python run.py --mode=gradcam --workdir=W --images=PHOTOS --output=DIR' in commands
  assert ('python run.py --mode=gradcam --workdir=W --images=PHOTOS --output=DIR '
          '--target=Light') in commands
  assert not [c for c in commands if '[' in c or c.endswith('\\')], commands
  unused = [start for start, _ in NOT_RUN if not any(c.startswith(start) for c in commands)
            and not start.startswith(('bash bench/device_check', 'DEVICE_CHECK_'))]
  assert not unused, f'NOT_RUN entries that match no documented command: {unused}'
  for where, start in RUN_ELSEWHERE:  # Each is one documented command (or documented() fails).
    assert documented(where, start)
  assert readme_block(RATED_BLOCK_START)[1].startswith(
      'python run.py --config=configs/rated_photos.py')


def strict(text, path):
  """JSON `text` parsed as RFC 8259 allows: NaN and infinities are errors."""
  def refuse(constant):
    raise AssertionError(f'{path} holds {constant}, which strict JSON readers refuse')
  return json.loads(text, parse_constant=refuse)


def test_every_json_file_the_commands_wrote_is_strict_json(sandbox):
  """Run after the commands: every .json and .jsonl file they left (configs,
  metrics, results, evaluations, paper.json, exports' metadata, cache records)
  parses with a strict reader, and the values that do not exist are null."""
  kinds, nulls = set(), 0
  for folder in (sandbox['root'], sandbox['trained']):
    for dirpath, _, files in os.walk(folder):
      for name in files:
        path = os.path.join(dirpath, name)
        if name.endswith('.jsonl'):
          lines = open(path, encoding='utf-8').read().splitlines()
          records = [strict(line, path) for line in lines if line.strip()]
        elif name.endswith('.json'):
          records = [strict(open(path, encoding='utf-8').read(), path)]
        else:
          continue
        kinds.add(re.sub(r'_[a-z_]+_test\.json$', '_*.json', name) if name.startswith(
            'evaluation_') else name)
        nulls += sum(json.dumps(r).count('null') for r in records)
  assert {'config.json', 'metrics.jsonl', 'results.json', 'paper.json',
          'evaluation_*.json', 'aesthetix.json'} <= kinds, sorted(kinds)
  assert nulls > 0  # Tiny runs have undefined values (a mean over no seeds, say).
