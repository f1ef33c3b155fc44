"""The workdir's files: written whole or not at all, parse errors that name the file,
one trainer at a time."""

import builtins
import errno
import json
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from aesthetix.runtime import workdir


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
  path = tmp_path / 'results.json'
  workdir.write_json(str(path), {'a': 1})
  with pytest.raises(ZeroDivisionError):
    with workdir.atomic_file(str(path)) as f:
      f.write('{"a": ')
      raise ZeroDivisionError  # Stands in for a kill mid-write.
  assert json.loads(path.read_text()) == {'a': 1}
  assert os.listdir(tmp_path) == ['results.json']


def test_a_torn_last_line_is_skipped_when_read_and_cut_before_the_next_append(tmp_path):
  path = str(tmp_path / workdir.METRICS_FILE)
  workdir.append_jsonl(path, {'epoch': 1})
  with open(path, 'a') as f:
    f.write('{"epoch": 2, "train_lo')  # A kill mid-write.
  assert workdir.read_jsonl(path) == [{'epoch': 1}]
  assert workdir.repair_jsonl(path) == len('{"epoch": 2, "train_lo')
  workdir.append_jsonl(path, {'epoch': 2})
  assert workdir.read_jsonl(path) == [{'epoch': 1}, {'epoch': 2}]
  assert workdir.repair_jsonl(path) == 0


def test_a_bad_line_inside_metrics_names_the_file_and_the_line(tmp_path):
  path = tmp_path / workdir.METRICS_FILE
  path.write_text('{"epoch": 1}\n{"epoch": 2, "train_lo\n{"epoch": 3}\n')
  with pytest.raises(workdir.WorkdirError, match=f'{path}, line 2, is not a JSON record'):
    workdir.read_jsonl(str(path))


def test_a_truncated_predictions_file_is_named_with_the_fix(tmp_path):
  path = workdir.prediction_path(str(tmp_path), 'stage2', 'test')
  workdir.save_npz(path, {'pred': np.zeros((4, 2)), 'ids': np.array(['a', 'b', 'c', 'd'])})
  assert workdir.load_predictions(str(tmp_path), 'stage2', 'test')['pred'].shape == (4, 2)
  data = open(path, 'rb').read()
  open(path, 'wb').write(data[:len(data) // 2])
  with pytest.raises(workdir.WorkdirError, match='stage2_test.npz is damaged .* Rerun the train'):
    workdir.load_predictions(str(tmp_path), 'stage2', 'test')
  assert workdir.load_predictions(str(tmp_path), 'stage1', 'test') is None


def test_move_aside_keeps_what_it_moves(tmp_path):
  damaged = tmp_path / 'checkpoints' / '8'
  damaged.mkdir(parents=True)
  (damaged / 'x').write_text('kept')
  first = workdir.move_aside(str(tmp_path), str(damaged), 'test', name='checkpoint-8')
  damaged.mkdir()
  second = workdir.move_aside(str(tmp_path), str(damaged), 'test', name='checkpoint-8')
  assert first != second and open(os.path.join(first, 'x')).read() == 'kept'
  assert os.path.dirname(first) == str(tmp_path / workdir.DAMAGED_DIR)


HOLD_LOCK = """
import sys, time
sys.path.insert(0, {repo!r})
from aesthetix.runtime import workdir
workdir.Lock({path!r}).acquire()
print('locked', flush=True)
time.sleep(600)
"""


def hold_lock_in_a_process(path):
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.Popen([sys.executable, '-c', HOLD_LOCK.format(repo=repo, path=str(path))],
                          stdout=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == 'locked'
  return proc


def test_the_lock_names_its_holder_and_dies_with_it(tmp_path):
  holder = hold_lock_in_a_process(tmp_path)
  try:
    with pytest.raises(workdir.WorkdirBusyError, match=f'process {holder.pid} on '):
      workdir.Lock(str(tmp_path)).acquire()
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
  # A killed holder leaves no stale lock.
  with workdir.Lock(str(tmp_path)):
    pass


# How a test makes a folder refuse new files: 'real' (chmod 555, or chattr +i
# for root, whom permissions do not stop) or 'simulated': the calls that make,
# rename or remove entries of the folder raise PermissionError, as the kernel
# does. The simulation runs everywhere; the real way where the machine allows
# it (a container without CAP_LINUX_IMMUTABLE refuses root's chattr +i).
READ_ONLY_WAYS = ('real', 'simulated')


def read_only(path, how, monkeypatch):
  """Makes folder `path` refuse new entries, `how` READ_ONLY_WAYS says; returns the undo.

  Where the real way is refused, the test fails under CI (which must exercise
  it) and is skipped elsewhere, saying why.
  """
  if how == 'simulated':
    refuse_new_entries(str(path), monkeypatch)
    return monkeypatch.undo
  if os.geteuid() != 0:
    os.chmod(path, 0o555)
    return lambda: os.chmod(path, 0o755)
  refused = subprocess.run(['chattr', '+i', str(path)], capture_output=True, text=True)
  if refused.returncode:
    why = f'root cannot make a folder read-only here: chattr +i: {refused.stderr.strip()}'
    if os.environ.get('CI'):
      pytest.fail(f'{why}; CI must run the real read-only path (CAP_LINUX_IMMUTABLE).')
    pytest.skip(f'{why}; the simulated variant of this test ran instead')
  return lambda: subprocess.run(['chattr', '-i', str(path)], check=True)


def refuse_new_entries(folder, monkeypatch):
  """Until `monkeypatch` undoes it: making, renaming or removing an entry of
  `folder` raises PermissionError (EACCES), as a read-only folder does; its
  existing files still open for writing, as there."""
  folder = os.path.abspath(folder)
  inside = lambda p: os.path.dirname(os.path.abspath(os.fspath(p))) == folder
  new_inside = lambda p: inside(p) and not os.path.exists(p)

  def refuse(p):
    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(p))

  def guarded(real, refused_if):
    def call(*args, **kwargs):
      if refused_if(*args, **kwargs):
        refuse(args[0])
      return real(*args, **kwargs)
    return call

  creates = lambda mode='r', *_, **__: any(c in mode for c in 'wax+')
  monkeypatch.setattr(builtins, 'open', guarded(
      builtins.open, lambda p, *a, **k: isinstance(p, (str, os.PathLike)) and new_inside(p)
      and creates(*a, **k)))
  monkeypatch.setattr(os, 'open', guarded(
      os.open, lambda p, flags, *a, **k: (
          (flags & os.O_CREAT and new_inside(p))
          or (flags & getattr(os, 'O_TMPFILE', 0) == getattr(os, 'O_TMPFILE', -1)
              and os.path.abspath(p) == folder))))
  monkeypatch.setattr(os, 'mkdir', guarded(os.mkdir, lambda p, *a, **k: new_inside(p)))
  # A missing entry is not found before any permission is checked (ENOENT).
  old_inside = lambda p: inside(p) and os.path.lexists(p)
  for name in ('replace', 'rename'):
    monkeypatch.setattr(os, name, guarded(getattr(os, name), lambda src, dst, *a, **k: (
        os.path.lexists(src) and (inside(src) or inside(dst)))))
  for name in ('remove', 'unlink'):
    monkeypatch.setattr(os, name, guarded(getattr(os, name), lambda p, *a, **k: old_inside(p)))


@pytest.mark.parametrize('how', READ_ONLY_WAYS)
def test_a_read_only_folder_is_one_clear_error(tmp_path, how, monkeypatch):
  undo = read_only(tmp_path, how, monkeypatch)
  try:
    for write in (lambda: workdir.write_json(str(tmp_path / 'r.json'), {}),
                  lambda: workdir.append_jsonl(str(tmp_path / 'm.jsonl'), {}),
                  lambda: workdir.Lock(str(tmp_path)).acquire()):
      with pytest.raises(workdir.WorkdirError, match=f'Cannot write {tmp_path}/'):
        write()
  finally:
    undo()
  assert os.listdir(tmp_path) == []


def test_writes_leave_no_temporaries(tmp_path):
  workdir.write_text(str(tmp_path / 'report.md'), 'x')
  workdir.write_lines(str(tmp_path / 'splits' / 'test.txt'), ['a', 'b'])
  workdir.save_npz(str(tmp_path / 'p.npz'), {'a': np.ones(2)})
  assert sorted(os.listdir(tmp_path)) == ['p.npz', 'report.md', 'splits']
  assert (tmp_path / 'splits' / 'test.txt').read_text() == 'a\nb\n'


def test_a_start_from_another_trained_workdir_is_another_run(tmp_path):
  config = {'seed': 0, 'init_from': None, 'stage2': {'epochs': 3}}
  workdir.claim(str(tmp_path), config, 'stage2', 5, 'test')
  (tmp_path / workdir.CHECKPOINT_DIR / '1').mkdir(parents=True)
  assert workdir.claim(str(tmp_path), dict(config), 'stage2', 5, 'test') is None
  with pytest.raises(workdir.IncompatibleWorkdirError, match=r'\(init_from differ'):
    workdir.claim(str(tmp_path), dict(config, init_from='/runs/aadb'), 'stage2', 5, 'test')
  # A workdir trained before the field existed resumes under a config that leaves it unset.
  stored = {k: v for k, v in config.items() if k != 'init_from'}
  json.dump(stored, open(tmp_path / workdir.CONFIG_FILE, 'w'))
  assert workdir.claim(str(tmp_path), dict(config), 'stage2', 5, 'test') is None


def test_checkpoint_source_names_a_workdir_or_one_of_its_checkpoints():
  assert workdir.checkpoint_source('runs/aadb') == ('runs/aadb', None)
  assert workdir.checkpoint_source('runs/aadb/checkpoints/5/') == ('runs/aadb', 5)
  assert workdir.checkpoint_source('checkpoints/5') == ('.', 5)
  assert workdir.checkpoint_source('runs/5') == ('runs/5', None)


def test_a_whole_last_record_without_its_newline_is_kept_and_completed(tmp_path):
  path = str(tmp_path / workdir.METRICS_FILE)
  workdir.append_jsonl(path, {'epoch': 1})
  with open(path, 'a') as f:
    f.write('{"epoch": 2}')  # A kill between the record and its newline.
  assert workdir.read_jsonl(path) == [{'epoch': 1}, {'epoch': 2}]
  assert workdir.repair_jsonl(path) == 0
  workdir.append_jsonl(path, {'epoch': 3})
  assert open(path).read() == '{"epoch": 1}\n{"epoch": 2}\n{"epoch": 3}\n'


def test_a_line_that_parses_but_fails_its_check_is_named(tmp_path):
  path = tmp_path / workdir.METRICS_FILE
  path.write_text('{"epoch": 1}\nnull\n')
  check = lambda record: None if isinstance(record, dict) else 'not an object'
  with pytest.raises(workdir.WorkdirError, match=f'{path}, line 2, does not hold a record of '
                     'this file: not an object. Delete that line'):
    workdir.read_jsonl(str(path), check)


KILLED_WRITE = """
import sys, time
sys.path.insert(0, {repo!r})
from aesthetix.runtime import workdir
with workdir.atomic_file({path!r}) as f:
  f.write('half of it')
  f.flush()
  print('writing', flush=True)
  time.sleep(600)
"""


def test_temporaries_of_killed_writes_are_removed_and_live_ones_kept(tmp_path):
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  target = tmp_path / workdir.PREDICTIONS_DIR / 'stage2_test.npz'
  writer = subprocess.Popen([sys.executable, '-c', KILLED_WRITE.format(repo=repo,
                                                                        path=str(target))],
                            stdout=subprocess.PIPE, text=True)
  assert writer.stdout.readline().strip() == 'writing'
  writer.send_signal(signal.SIGKILL)
  writer.wait(timeout=30)
  killed, = os.listdir(target.parent)
  assert killed == f'.stage2_test.npz.tmp-{socket.gethostname()}-{writer.pid}'
  finished = subprocess.Popen(['true'])  # Its pid is free again once it exits.
  finished.wait()
  names = {'old_format': f'.results.json.tmp-{finished.pid}',  # Written without a host.
           'alive': os.path.basename(workdir.tmp_name('.report.md')),
           'other_host': f'.report.md.tmp-{socket.gethostname()}x-{finished.pid}',
           'file': 'results.json'}
  for name in names.values():
    (tmp_path / name).write_text('x')
  removed = workdir.remove_workdir_temporaries(str(tmp_path))
  assert sorted(removed) == sorted([str(target.parent / killed),
                                    str(tmp_path / names['old_format'])])
  assert os.listdir(target.parent) == []
  assert sorted(os.listdir(tmp_path)) == sorted(
      [workdir.PREDICTIONS_DIR, names['alive'], names['other_host'], names['file']])
