"""Faults of the disk and of the workdir's own files (issue 27): a full disk, a
flipped bit in a checkpoint, history lines that parse but are wrong, the noise
of a handled fallback and the memory of scoring. Each is a clear stop (one
line, exit 2, nothing lost, the rerun bit-identical) or a route around it,
never a wrong number.

The full-disk run is simulated (no room from posix_fallocate, little free
space for a checkpoint) so that it runs anywhere; where the tests may mount a
tmpfs (root on Linux) it is also made real, and the file size limit
(RLIMIT_FSIZE) gives the kernel's own refusals without mounting.
"""

import csv
import errno
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import tracemalloc

import jax
import numpy as np
from PIL import Image
import pytest

from aesthetix.data import images
from aesthetix.model import multitask as model_lib
from aesthetix.results import report
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.serving import gradcam
from aesthetix.serving import predict
from aesthetix.serving import scorer as scorer_lib
from aesthetix.training import checkpoint
from aesthetix.training import history
from aesthetix.training import optim
from aesthetix.training import steps
from aesthetix.training import train
from tests import run_errors_test
from tests import trained_workdir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
run_py, error_line = run_errors_test.run_py, run_errors_test.error_line


# The shared trained workdir, and copies of it to damage: its files, or its
# checkpoints' bytes too.
trained, copy = run_errors_test.trained, run_errors_test.copy
copy_with_checkpoints = run_errors_test.copy_with_checkpoints


@pytest.fixture(scope='module')
def config_path(tmp_path_factory):
  """A config file of the trained workdir's config, for run.py."""
  data_dir = trained_workdir.config(tmp_path_factory).dataset.data_dir
  path = tmp_path_factory.mktemp('config') / 'trained_config.py'
  path.write_text(textwrap.dedent(f'''\
      from tests import tiny
      def get_config():
        return tiny.config({data_dir!r}, {trained_workdir.STAGE1_EPOCHS},
                           {trained_workdir.STAGE2_EPOCHS})
      '''))
  return str(path)


def params_like(plan):
  model = model_lib.build_model(plan.model)
  return model, model_lib.param_shapes(model, plan.data.image_size)


def assert_same_params(workdir, reference, plan):
  _, like = params_like(plan)
  for a, b in zip(jax.tree_util.tree_leaves(checkpoint.restore_params(workdir, like)),
                  jax.tree_util.tree_leaves(checkpoint.restore_params(reference, like))):
    np.testing.assert_array_equal(a, b)


def epochs_in_history(workdir):
  return [(r['stage'], r['epoch']) for r in history.read(workdir)
          if history.kind_of(r) == history.EPOCH]


def temporaries(folder):
  return [n for f in (folder, os.path.join(folder, workdir_lib.CACHE_DIR))
          if os.path.isdir(f) for n in os.listdir(f) if '.tmp-' in n]


EVERY_EPOCH_ONCE = [('stage1', e) for e in range(1, trained_workdir.STAGE1_EPOCHS + 1)] + [
    ('stage2', e) for e in range(1, trained_workdir.STAGE2_EPOCHS + 1)]


# ------------------------------------------------------------------ full disk


def test_a_full_disk_is_one_line_at_the_cache_and_at_a_checkpoint_and_the_rerun_is_identical(
    trained, config_path, tmp_path, monkeypatch, capsys):
  plan, reference = trained
  workdir = str(tmp_path / 'run')
  command = [f'--config={config_path}', f'--workdir={workdir}']

  def no_room(fd, offset, length):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  with monkeypatch.context() as patch:  # The cache pass: the disk is full.
    patch.setattr(os, 'posix_fallocate', no_room)
    code, stderr = run_py(capsys, *command)
  assert code == 2
  assert re.fullmatch(
      rf'error: No room for {workdir}/feature_cache/train-prefix-\w+-0of1\.npy \(No space '
      r'left on device\): this cache file needs 1\.5 MiB and [\d.]+ \w+ are free there\. '
      r'Free space on that disk, or put the caches on another \(--config\.feature_cache_dir'
      r'=DIR\), or decode images in stage 2 instead \(--config\.prefix_cache=False\), then '
      r'run the same command again: what was written before is whole and is kept\.',
      error_line(stderr))
  assert temporaries(workdir) == [] and workdir_lib.checkpoint_numbers(workdir) == []

  first = os.path.join(workdir_lib.checkpoint_dir(workdir), '1')
  real_free = workdir_lib.free_bytes
  with monkeypatch.context() as patch:  # Room for checkpoint 1, not for 2.
    patch.setattr(workdir_lib, 'free_bytes',
                  lambda path: 1000 if os.path.isdir(first) else real_free(path))
    code, stderr = run_py(capsys, *command)
  assert code == 2
  fresh = steps.initial_state(plan, params_like(plan)[0], jax.random.PRNGKey(0))
  stage1 = steps.stage_state(fresh, optim.stage_optimizer(plan.stages[0], fresh['params']))
  needed = workdir_lib.size_text(checkpoint.needed_bytes(stage1))
  assert error_line(stderr) == (
      f'error: No room for {workdir}/checkpoints/2: checkpoint 2 needs {needed} and 1000 '
      'bytes are free there. Free space on that disk, or keep fewer checkpoints '
      '(--config.checkpoint_max_to_keep=N), then run the same command again: what was '
      'written before is whole and is kept.')
  assert workdir_lib.checkpoint_numbers(workdir) == [1]
  assert epochs_in_history(workdir) == [('stage1', 1)]  # Epoch 2 was not saved: not kept.

  finished = subprocess.Popen(['true'])  # Its pid is free again once it exits.
  finished.wait()
  stale = os.path.join(workdir, f'.results.json.tmp-{socket.gethostname()}-{finished.pid}')
  open(stale, 'w').close()  # Left by a write that was killed.
  code, _ = run_py(capsys, *command)  # Space again: the same command resumes.
  assert code == 0
  assert_same_params(workdir, reference, plan)
  assert epochs_in_history(workdir) == EVERY_EPOCH_ONCE
  assert temporaries(workdir) == []


TMPFS_SIZES_MIB = (1, 100)  # No room for the prefix cache; for checkpoint 2.


def mount_tmpfs(folder, size_mib, remount=False):
  """Mounts (or resizes) a tmpfs of `size_mib` at `folder`; False when not allowed."""
  options = f'{"remount," if remount else ""}size={size_mib}m'
  return subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(folder)],
                        capture_output=True).returncode == 0


def test_a_real_full_tmpfs_is_one_line_at_the_cache_and_at_a_checkpoint(
    config_path, tmp_path, capsys):
  """The kernel's own full disk (the simulated test above shows the rerun)."""
  disk = tmp_path / 'disk'
  disk.mkdir()
  if not (sys.platform.startswith('linux') and os.geteuid() == 0
          and mount_tmpfs(disk, TMPFS_SIZES_MIB[0])):
    pytest.skip('cannot mount a tmpfs here (needs root on Linux); the simulated test ran')
  try:
    workdir = str(disk / 'run')
    command = [f'--config={config_path}', f'--workdir={workdir}']
    code, stderr = run_py(capsys, *command)  # Without the reservation: a SIGBUS.
    assert code == 2
    assert re.fullmatch(r'error: No room for \S+/train-prefix-\S+\.npy \(No space left on '
                        r'device\): this cache file needs 1\.5 MiB and [\d.]+ KiB are free '
                        r'there\. .*', error_line(stderr))
    assert temporaries(workdir) == []

    assert mount_tmpfs(disk, TMPFS_SIZES_MIB[1], remount=True)
    code, stderr = run_py(capsys, *command)
    assert code == 2
    assert re.fullmatch(rf'error: No room for {workdir}/checkpoints/2: checkpoint 2 needs '
                        r'[\d.]+ MiB and [\d.]+ MiB are free there\. .*', error_line(stderr))
    assert workdir_lib.checkpoint_numbers(workdir) == [1]
    assert epochs_in_history(workdir) == [('stage1', 1)]
  finally:
    subprocess.run(['umount', str(disk)], check=True)


# Runs in a process whose files may not pass LIMIT bytes (RLIMIT_FSIZE; Python
# ignores SIGXFSZ, so a write past it fails with EFBIG): prints each one line.
FILE_SIZE_LIMIT = """
import os, resource, sys
import numpy as np
sys.path.insert(0, {repo!r})
from aesthetix.runtime import workdir
from aesthetix.training import checkpoint
folder, limit = {folder!r}, {limit}
workdir.write_text(os.path.join(folder, 'report.md'), 'the old report')
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
for what, write in (
    ('atomic', lambda: workdir.write_text(os.path.join(folder, 'report.md'), 'x' * 2 * limit)),
    ('reserve', lambda: workdir.reserve(open(os.path.join(folder, 'cache.npy'), 'wb'),
                                        2 * limit, os.path.join(folder, 'cache.npy'),
                                        'this cache file'))):
  try:
    write()
  except workdir.DiskFullError as e:
    print(what, e, flush=True)
mngr = checkpoint.manager(folder)
noise = np.random.default_rng(0).random(limit // 2, np.float32)  # Incompressible.
checkpoint.save(mngr, 1, dict(params=dict(a=noise), step=np.int32(1)), dict(stage_index=0,
                stage='stage1', epoch=1))
try:  # The write fails in the background; waiting for it names the full disk.
  checkpoint.finish(mngr)
except workdir.DiskFullError as e:
  print('checkpoint', e, flush=True)
print('left', sorted(os.listdir(folder)), open(os.path.join(folder, 'report.md')).read())
"""


def test_the_file_size_limit_is_one_line_for_an_atomic_write_a_cache_and_a_checkpoint(
    tmp_path):
  limit = 2**20
  script = FILE_SIZE_LIMIT.format(repo=REPO, folder=str(tmp_path), limit=limit)
  result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, JAX_PLATFORMS='cpu'))
  lines = dict(line.split(' ', 1) for line in result.stdout.splitlines())
  assert set(lines) == {'atomic', 'reserve', 'checkpoint', 'left'}, result.stderr[-3000:]
  tail = ('this process may write files of at most 1.0 MiB (ulimit -f). Raise that limit, '
          'then run the same command again: what was written before is whole and is kept.')
  assert lines['atomic'] == f'No room for {tmp_path}/report.md (File too large): {tail}'
  assert lines['reserve'] == (f'No room for {tmp_path}/cache.npy (File too large): this '
                              f'cache file needs 2.0 MiB and {tail}')
  assert lines['checkpoint'] == (f'No room for {tmp_path}/checkpoints (File too large): '
                                 f'{tail}')
  # The old report is whole; no temporary stays (the checkpoint's is Orbax's to remove).
  assert lines['left'] == "['cache.npy', 'checkpoints', 'report.md'] the old report"


# ---------------------------------------------------------------- checkpoints


def flip_a_bit(workdir, number):
  """Flips the lowest bit of a byte in the middle of the largest params file of
  checkpoint `number`: the arrays still restore, one number changed a little."""
  data = os.path.join(workdir_lib.checkpoint_dir(workdir), str(number), 'params',
                      'ocdbt.process_0', 'd')
  path = max((os.path.join(data, n) for n in os.listdir(data)), key=os.path.getsize)
  with open(path, 'r+b') as f:
    f.seek(os.path.getsize(path) // 2)
    byte = f.read(1)[0]
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte ^ 1]))


def photo_paths(folder, count=3, shape=(30, 40, 3)):
  folder.mkdir()
  paths = []
  for i in range(count):
    paths.append(str(folder / f'p{i}.png'))
    Image.fromarray(np.random.default_rng(i).integers(0, 256, shape, np.uint8)).save(paths[-1])
  return paths


def test_a_flipped_bit_in_the_newest_checkpoint_is_routed_around_by_scoring_and_training(
    trained, copy_with_checkpoints, tmp_path, capsys, caplog):
  plan, reference = trained
  copy = copy_with_checkpoints
  newest = workdir_lib.checkpoint_numbers(copy)[-1]
  flip_a_bit(copy, newest)
  paths = photo_paths(tmp_path / 'photos')

  def predicted():
    output = str(tmp_path / 'scores.csv')
    code, _ = run_py(capsys, '--mode=predict', f'--workdir={copy}',
                     f'--images={tmp_path / "photos"}', f'--output={output}')
    assert code == 0
    with open(output) as f:
      rows = [line.split(',') for line in f.read().splitlines()[1:]]
    # The outputs' scores, then their percentiles (the workdir keeps its quantiles).
    return np.array([[float(v) for v in row[1:1 + len(plan.output_names)]] for row in rows])

  newest_scores = scorer_lib.Scorer.from_workdir(reference).score_array(paths)
  # The params file is the newest checkpoint's params as saved (checked
  # against the digest saved with them): scoring reads them from it.
  np.testing.assert_allclose(predicted(), newest_scores, atol=10**-predict.DECIMALS)
  assert 'is damaged' not in caplog.text
  # Without it (a workdir trained before it existed) the checkpoint is read,
  # and the damaged one routed around.
  os.remove(workdir_lib.params_file_path(copy))
  written = predicted()
  model, like = params_like(plan)
  before = scorer_lib.Scorer(plan, model, checkpoint.restore_params(copy, like,
                                                                    number=newest - 1))
  np.testing.assert_allclose(written, before.score_array(paths), atol=10**-predict.DECIMALS)
  # (The newest checkpoint, undamaged, scores otherwise: the fallback is visible.)
  assert np.abs(written - newest_scores).max() > 1e-4
  assert (f'Checkpoint {newest} is damaged (DamagedCheckpointError: its params differ from '
          'their digest') in caplog.text

  fresh = steps.initial_state(plan, model, jax.random.PRNGKey(plan.seed))
  mngr = checkpoint.manager(copy, max_to_keep=plan.checkpoint_max_to_keep)
  # Where checkpoint newest - 1 stands in the schedule: (stage index, epochs done in it).
  before_newest = newest - 1
  expected = ((0, before_newest) if before_newest <= trained_workdir.STAGE1_EPOCHS
              else (1, before_newest - trained_workdir.STAGE1_EPOCHS))
  assert train.restore_latest(plan, copy, mngr, fresh)[:2] == expected
  moved, = os.listdir(os.path.join(copy, workdir_lib.DAMAGED_DIR))
  assert moved.startswith(f'checkpoint-{newest}.')


def small_state(value):
  return dict(params=dict(w=np.full((3, 4), value, np.float32)), step=np.int32(7),
              rng=np.arange(2, dtype=np.uint32))


def test_a_non_finite_number_is_refused_whatever_the_digests_say(tmp_path, caplog):
  mngr = checkpoint.manager(str(tmp_path))
  meta = dict(stage_index=0, stage='stage1', epoch=1)
  checkpoint.save(mngr, 1, small_state(0.5), meta)
  checkpoint.save(mngr, 2, small_state(np.nan), dict(meta, epoch=2))  # Digests match.
  checkpoint.finish(mngr)
  like = dict(small_state(0.0), step=np.int64(0))  # As a fresh state holds its step.
  with pytest.raises(checkpoint.DamagedCheckpointError,
                     match=r"its params hold a non-finite number at \['w'\]"):
    checkpoint.restore(mngr, 2, like)
  restored = checkpoint.restore(mngr, 1, like)  # Saved as int32, restored as int64.
  assert restored['step'] == 7 and restored['step'].dtype == np.int64 and np.all(restored['params']['w'] == 0.5)
  params = checkpoint.restore_params(str(tmp_path), like['params'])
  np.testing.assert_array_equal(params['w'], np.full((3, 4), 0.5, np.float32))
  assert 'Checkpoint 2 is damaged (DamagedCheckpointError: its params hold a non-finite' in (
      caplog.text)


def test_a_checkpoint_saved_before_digests_is_used_and_checked_for_non_finite_numbers(
    tmp_path, caplog):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  mngr = checkpoint.manager(str(tmp_path))
  for number, value in ((1, 0.25), (2, np.inf)):  # As the former `save` wrote them.
    state = small_state(value)
    mngr.save(number, args=ocp.args.Composite(
        params=ocp.args.StandardSave(state['params']),
        train=ocp.args.StandardSave({k: v for k, v in state.items() if k != 'params'}),
        meta=ocp.args.JsonSave(dict(stage_index=0, stage='stage1', epoch=number))))
  checkpoint.finish(mngr)
  params = checkpoint.restore_params(str(tmp_path), small_state(0.0)['params'])
  np.testing.assert_array_equal(params['w'], np.full((3, 4), 0.25, np.float32))
  assert caplog.text.count('carry no digests (saved before they were added)') == 1
  assert "Checkpoint 2 is damaged (DamagedCheckpointError: its params hold a non-finite " \
         "number at ['w'])" in caplog.text


def test_predict_writes_a_reason_never_a_non_finite_score_and_the_scorer_raises(
    trained, tmp_path, monkeypatch):
  _, workdir = trained
  paths = photo_paths(tmp_path / 'photos')
  scorer = scorer_lib.Scorer.from_workdir(workdir)
  honest = scorer.member_pixels  # [members, b, outputs]: every scoring path's step.

  def nan_for_the_second(batch, full=False):
    out = np.array(honest(batch, full))
    out[:, 1, 0] = np.nan
    return out

  monkeypatch.setattr(scorer, 'member_pixels', nan_for_the_second)
  rows, _ = predict.score_paths(scorer, paths, progress=False)
  assert [r[predict.ERROR_COLUMN][:45] for r in rows] == [
      '', 'the model gave a non-finite score (score nan)', '']
  assert all(rows[1][n] is None for n in scorer.names)
  assert all(np.isfinite(rows[i][n]) for i in (0, 2) for n in scorer.names)
  output = str(tmp_path / 'scores.csv')
  predict.write_scores(rows, scorer.names, output)
  with open(output, newline='') as f:
    written = list(csv.DictReader(f))
  assert [written[1][n] for n in scorer.names] == [''] * len(scorer.names)
  assert written[1][predict.ERROR_COLUMN] == rows[1][predict.ERROR_COLUMN]
  with pytest.raises(scorer_lib.NonFiniteScoreError, match=r'Photo\(s\) 1 \(of 3\): the model '
                     r'gave a non-finite score \(score nan\)'):
    scorer.score_array(paths)


def truncate_params(workdir, number):
  """Each params data file of checkpoint `number` loses its second half (a crash)."""
  data = os.path.join(workdir_lib.checkpoint_dir(workdir), str(number), 'params',
                      'ocdbt.process_0', 'd')
  for name in os.listdir(data):
    path = os.path.join(data, name)
    os.truncate(path, os.path.getsize(path) // 2)


# Seconds for the reads a failed restore left in flight to complete (they did
# within the next restore, well under a second, on the development machine).
LATE_READS_S = 2


def test_a_fallback_to_an_older_checkpoint_prints_no_traceback(trained, copy_with_checkpoints,
                                                               monkeypatch):
  """The late reads of the failed restore reach no hook that prints (pytest has
  its own hook: a recording one stands in for Python's printing one)."""
  plan, _ = trained
  copy = copy_with_checkpoints
  newest = workdir_lib.checkpoint_numbers(copy)[-1]
  truncate_params(copy, newest)
  _, like = params_like(plan)
  printed = []
  monkeypatch.setattr(sys, 'unraisablehook', printed.append)
  params = checkpoint.restore_params(copy, like)
  time.sleep(LATE_READS_S)
  expected = checkpoint.restore_params(copy, like, number=newest - 1)
  np.testing.assert_array_equal(params['head']['output']['kernel'],
                                expected['head']['output']['kernel'])
  assert [(type(u.exc_value).__name__, str(u.exc_value)) for u in printed] == []
  # Any other unraisable exception still reaches the hook that was there.
  sys.unraisablehook(type('Unraisable', (), dict(exc_value=RuntimeError('Event loop is closed'),
                                                 exc_traceback=None, object=None))())
  assert len(printed) == 1


# -------------------------------------------------------------------- history


def damage_line(workdir, number, damage):
  path = history.path(workdir)
  lines = open(path).read().splitlines()
  lines[number - 1] = damage(lines[number - 1])
  open(path, 'w').write('\n'.join(lines) + '\n')
  return path


# Damage that still parses, done to line 2 (stage 1's second epoch).
HISTORY_DAMAGE = {
    'a flipped bit in a key': (lambda line: line.replace('"stage"', '"stafe"', 1),
                               'the epoch record has no "stage" and an unknown key "stafe"'),
    'null': (lambda line: 'null', 'it is null, not a JSON object'),
    'a number': (lambda line: '7', 'it is 7, not a JSON object'),
    'a string epoch': (lambda line: line.replace('"epoch": 2', '"epoch": "2"'),
                       'the epoch record\'s epoch is "2", not a whole number from 1'),
    'a flipped bit in a stage': (lambda line: line.replace('"stage1"', '"stage3"'),
                                 'its stage "stage3" is not one of this run (stage1, stage2)'),
    'a string metric': (lambda line: line.replace('"n": 8', '"n": "8"', 1),
                        'the epoch record\'s validation/score/n is "8", not a whole number'),
}


def snapshot(folder):
  """(relative path, size, mtime) of every file but the lock (each run rewrites it)."""
  return sorted((os.path.relpath(os.path.join(root, n), folder),
                 os.path.getsize(os.path.join(root, n)),
                 os.stat(os.path.join(root, n)).st_mtime_ns)
                for root, _, names in os.walk(folder) for n in names
                if n != workdir_lib.LOCK_FILE)


def damaged_message(path, problem):
  return (f'{path}, line 2, does not hold a record of this file: {problem}. Delete that '
          'line, or restore the file from a copy (it holds one record per line), and rerun.')


@pytest.mark.parametrize('damage', sorted(HISTORY_DAMAGE))
def test_history_damage_that_parses_is_named_with_its_line(trained, tmp_path, damage):
  plan, workdir = trained
  shutil.copy(history.path(workdir), history.path(str(tmp_path)))
  fn, problem = HISTORY_DAMAGE[damage]
  path = damage_line(str(tmp_path), 2, fn)
  with pytest.raises(workdir_lib.WorkdirError) as raised:
    report.read_history(str(tmp_path), plan.stage_names)
  assert str(raised.value) == damaged_message(path, problem)


def test_a_damaged_history_is_one_line_from_the_report_and_stops_training_before_it_starts(
    copy, capsys, tmp_path_factory):
  fn, problem = HISTORY_DAMAGE['a flipped bit in a key']
  message = damaged_message(damage_line(copy, 2, fn), problem)
  code, stderr = run_py(capsys, '--mode=report', f'--workdir={copy}')
  assert code == 2
  assert error_line(stderr) == f'error: {message}'
  before = snapshot(copy)
  with pytest.raises(workdir_lib.WorkdirError) as raised:
    train.train_and_evaluate(trained_workdir.config(tmp_path_factory), copy)
  assert str(raised.value) == message
  assert snapshot(copy) == before


def test_every_record_a_run_writes_fits_the_schema_and_a_last_one_without_newline_stays(
    trained, tmp_path):
  plan, workdir = trained
  records = history.read(workdir, plan.stage_names)
  kinds = [history.kind_of(r) for r in records]
  assert kinds.count(history.EPOCH) == len(EVERY_EPOCH_ONCE)
  assert kinds.count(history.TEST) == kinds.count(history.TIMING_RECORD) == 2
  with pytest.raises(ValueError, match='Not a record of metrics.jsonl: the epoch record has '
                     'an unknown key "learning_rate"'):
    history.append(str(tmp_path), dict(records[0], learning_rate=1e-3))
  path = history.path(str(tmp_path))
  data = open(history.path(workdir), 'rb').read()
  open(path, 'wb').write(data[:-1])  # A kill between a record and its newline.
  assert report.read_history(str(tmp_path), plan.stage_names) == report.read_history(
      workdir, plan.stage_names)
  assert history.read(str(tmp_path)) == records
  assert workdir_lib.repair_jsonl(path) == 0 and open(path, 'rb').read() == data


# ---------------------------------------------------------------- photo memory


def test_scoring_keeps_model_inputs_and_decodes_within_its_pixel_budget(
    trained, tmp_path, monkeypatch):
  """8 photos, 4 loading threads and a budget of one photo: one decoded photo at
  a time, and only model inputs wait for the devices (numpy's memory, traced)."""
  plan, workdir = trained
  shape = (600, 800, 3)
  folder = tmp_path / 'photos'
  folder.mkdir()
  paths = []
  for i in range(8):
    paths.append(str(folder / f'p{i}.jpg'))
    Image.fromarray(np.random.default_rng(i).integers(0, 256, shape, np.uint8)).save(paths[-1])
  monkeypatch.setattr(os, 'cpu_count', lambda: 4)
  monkeypatch.setattr(images, 'DECODE_BUDGET_PIXELS', shape[0] * shape[1])
  monkeypatch.setattr(images, 'BAND_PIXELS', shape[0] * shape[1] // 10)
  scorer = scorer_lib.Scorer.from_workdir(workdir, batch_size=8)
  expected = scorer.score_array(paths)
  tracemalloc.start()
  try:
    rows, _ = predict.score_paths(scorer, paths, progress=False)
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  np.testing.assert_allclose([[r[n] for n in scorer.names] for r in rows], expected,
                             rtol=1e-6)
  photo_bytes = int(np.prod(shape))
  print(f'traced peak: {peak / photo_bytes:.2f} decoded photos')
  assert peak < 1.8 * photo_bytes, f'{peak / photo_bytes:.2f} photos at once'

  shown, model_input = gradcam.photo_loader(plan.data)(paths[0])[0]
  assert max(shown.shape[:2]) == gradcam.DISPLAY_SIZE and shown.shape[2] == 3
  np.testing.assert_array_equal(model_input, scorer.pixels(paths[0]))


# Prints Pillow's block size once aesthetix's image reader is imported.
BLOCK_SIZE = ('from aesthetix.data import images; from PIL import Image; '
              'print(Image.core.get_block_size())')
GLIBC_LARGEST_MMAP_THRESHOLD = 32 << 20  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit Linux.


def test_decoded_blocks_are_large_enough_to_be_given_back_unless_the_user_chose_a_size():
  """Pillow's blocks above glibc's largest mmap threshold are mapped, so a
  freed photo leaves no arena behind (bench/predict_memory.py measures it)."""
  def block_size(**env):
    return int(subprocess.run([sys.executable, '-c', BLOCK_SIZE], cwd=REPO, check=True,
                              capture_output=True, text=True,
                              env=dict(os.environ, **env)).stdout)
  assert block_size() == images.PILLOW_BLOCK_BYTES > GLIBC_LARGEST_MMAP_THRESHOLD
  assert block_size(PILLOW_BLOCK_SIZE='1m') == 2**20
