"""`make test-py` runs the suite as two pytest processes (tools/pytest_shards.py): together they run every test once."""
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
    assert not any('test_tutorial_runs' in t for t in shards['rest'])

@pytest.mark.parametrize('codes,status', [({'a': 0, 'b': 0}, 0), ({'a': 1, 'b': 0}, 1), ({'a': 0, 'b': 2}, 2),
                                          ({'a': 5, 'b': 0}, 0), ({'a': 5, 'b': 5}, 5), ({'a': 5, 'b': 1}, 1),
                                          ({'a': -9, 'b': 0}, -9)])
def test_combined_status(codes, status):
    assert pytest_shards.combined_status(codes) == status

def test_extra_arguments_reach_both_shards():
    args, extra = pytest_shards.parse_args(['-v', '--durations=0', '--bound', '5', '-k', 'x'])
    assert args.bound == 5 and extra == ['-v', '--durations=0', '-k', 'x']
    cmds = pytest_shards.shard_commands(extra)
    assert set(cmds) == set(pytest_shards.SHARDS)
    assert all(c[3:7] == extra and c[-1] == 'tests' for c in cmds.values()), cmds
    assert list(pytest_shards.shard_commands(extra, serial=True)) == ['all']
