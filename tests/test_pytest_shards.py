"""`make test-py` runs the suite as three pytest processes (tools/pytest_shards.py): together they run every test once."""
import subprocess, sys
import pytest
from conftest import REPO   # conftest puts tools/ on sys.path
import pytest_shards

def collected(*args) -> set:
    out = subprocess.run([sys.executable, '-m', 'pytest', '-q', '--co', *args, 'tests'], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return {l for l in out.stdout.splitlines() if '::' in l}

def test_the_shards_split_the_suite_without_overlap():
    shards = {name: collected('-m', expr) for name, expr in pytest_shards.SHARDS.items()}
    every = collected()
    assert set.union(*shards.values()) == every
    assert not set.intersection(*shards.values())
    assert any('test_docs.py::test_tutorial_runs' in t for t in shards['tutorials']), "the tutorials' shard runs them"
    assert not any('test_tutorial_runs' in t for t in shards['rest'] | shards['pipeline'])
    # a test that reads only the pipeline run goes beside the tutorials, not behind them; one that reads a tutorial's
    # scenario (through a fixture of its own) goes with the tutorials
    assert 'tests/test_pipeline.py::test_metrics_cli' in shards['pipeline']
    assert 'tests/test_loop.py::test_pipeline_yields_champion_with_card' in shards['pipeline']
    assert 'tests/test_loop.py::test_drift_retrain_gate_rollback' in shards['tutorials']
    assert 'tests/test_docs.py::test_site_has_every_section' in shards['tutorials']

@pytest.mark.parametrize('codes,status', [({'a': 0, 'b': 0}, 0), ({'a': 1, 'b': 0}, 1), ({'a': 0, 'b': 2}, 2),
                                          ({'a': 5, 'b': 0}, 0), ({'a': 5, 'b': 5}, 5), ({'a': 5, 'b': 1}, 1),
                                          ({'a': -9, 'b': 0}, -9)])
def test_combined_status(codes, status):
    assert pytest_shards.combined_status(codes) == status

def test_failed_tests_are_named_again_at_the_end():
    log = ("tests/test_a.py::test_x FAILED\nFAILED is a word\n=== short test summary info ===\n"
           "FAILED tests/test_a.py::test_x - AssertionError: 4 raylets\nERROR tests/test_b.py::test_y - OSError\n"
           "=== 1 failed, 1 error, 9 passed in 3.0s ===\n")
    assert pytest_shards.failures(log) == ['FAILED tests/test_a.py::test_x - AssertionError: 4 raylets',
                                           'ERROR tests/test_b.py::test_y - OSError']
    many = '=== short test summary info ===\n' + ''.join(f'FAILED tests/t.py::test_{i}\n' for i in range(25))
    assert pytest_shards.failures(many)[-1] == '... and 5 more' and len(pytest_shards.failures(many)) == 21
    assert pytest_shards.failures('=== 9 passed in 3.0s ===') == []

def test_extra_arguments_reach_both_shards():
    args, extra = pytest_shards.parse_args(['-v', '--durations=0', '--bound', '5', '-k', 'x'])
    assert args.bound == 5 and extra == ['-v', '--durations=0', '-k', 'x']
    cmds = pytest_shards.shard_commands(extra)
    assert set(cmds) == set(pytest_shards.SHARDS)
    assert all(c[3:7] == extra and c[-1] == 'tests' for c in cmds.values()), cmds
    assert cmds['rest'][7:11] == ['-n', '2', '--dist', 'loadfile'] and '-n' not in cmds['tutorials']
    assert list(pytest_shards.shard_commands(extra, serial=True)) == ['all']
    # a test file among the arguments runs instead of the whole suite
    only = pytest_shards.shard_commands(['-q', 'tests/test_cli_fast.py::test_a_missing_extra_is_one_line_naming_it'], serial=True)
    assert only['all'][-2:] == ['-q', 'tests/test_cli_fast.py::test_a_missing_extra_is_one_line_naming_it'], only
    assert all('tests/test_cli_fast.py' in c and 'tests' not in c
               for c in pytest_shards.shard_commands(['tests/test_cli_fast.py']).values())

# ---- the tutorials' runs, shared by the shards (tests/conftest.py: shared_tutorial) --------------------------------
def fake_tutorial(share, root, name, dest, bound):
    "A stand-in for a tutorial's run: counts its runs, takes a moment, fails when its name says so."
    import time
    from pathlib import Path
    root.mkdir(parents=True)
    with open(root.parent.parent/'runs.txt', 'a') as f: f.write(f'{name}\n')
    time.sleep(1)
    if 'broken' in name: raise RuntimeError(f'tutorial {name} failed')
    dest.write_text('{}')
    return dest

def ask(share, name, out):
    from conftest import shared_tutorial
    nb, root = shared_tutorial(share, name, bound=60, runner=fake_tutorial)
    out.put((str(nb), str(root)))

def test_each_tutorial_runs_once_for_every_process_that_asks(tmp_path):
    import multiprocessing as mp
    ctx = mp.get_context('fork'); out = ctx.Queue()
    procs = [ctx.Process(target=ask, args=(tmp_path, name, out)) for name in ['01_a.ipynb'] * 3 + ['02_broken.ipynb'] * 2]
    for p in procs: p.start()
    got = [out.get(timeout=60) for _ in procs]
    for p in procs: p.join(30)
    assert sorted((tmp_path/'runs.txt').read_text().split()) == ['01_a.ipynb', '02_broken.ipynb']
    assert got.count((str(tmp_path/'01_a'/'01_a.ipynb'), str(tmp_path/'01_a'/'repo'))) == 3
    assert [nb for nb, _ in got].count('tutorial 02_broken.ipynb failed') == 2   # the error, for every asker

def test_a_run_whose_process_died_is_run_again(tmp_path):
    import multiprocessing as mp, os, signal, time
    ctx = mp.get_context('fork'); out = ctx.Queue()
    first = ctx.Process(target=ask, args=(tmp_path, '01_a.ipynb', out)); first.start()
    t0 = time.monotonic()
    while not (tmp_path/'runs.txt').exists() and time.monotonic() - t0 < 30: time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL); first.join(30)   # killed while it ran the tutorial, holding the lock
    again = ctx.Process(target=ask, args=(tmp_path, '01_a.ipynb', out)); again.start()
    assert out.get(timeout=60)[0] == str(tmp_path/'01_a'/'01_a.ipynb')
    again.join(30)
    assert (tmp_path/'runs.txt').read_text().split() == ['01_a.ipynb', '01_a.ipynb']
