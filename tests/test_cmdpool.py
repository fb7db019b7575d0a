"""The tests' command pool (tools/cmdpool.py): a forked command answers as a fresh interpreter would (argv, folder,
`sys.path`, its folder's own `mlops_workbench`, output, exit status, threads and atexit at its end), a timeout kills it,
and what it cannot serve as a fresh interpreter would starts fresh."""
import subprocess, sys, textwrap
import pytest
from conftest import BIN, clean_env
import cmdpool

PROBE = textwrap.dedent("""
    import atexit, os, sys, threading, time, numpy
    import mlops_workbench
    print(sys.argv, os.getcwd(), sys.path[0], sys.orig_argv[1:2], os.environ.get('MLWB_PROBE'))
    print(mlops_workbench.__file__, numpy.random.randint(1 << 30))
    print('torch preloaded' if 'torch' in sys.modules else 'torch not imported', file=sys.stderr)
    atexit.register(lambda: print('atexit ran'))
    threading.Thread(target=lambda: (time.sleep(0.3), print('thread joined'))).start()
    a = sys.argv[1:] or ['0']
    sys.exit(int(a[0]) if a[0].isdigit() else a[0])
""")

@pytest.fixture
def folder(tmp_path):
    "A folder with a `mlops_workbench` package of its own: a command run there imports it first, as in a repo copy."
    (tmp_path/'mlops_workbench').mkdir()
    (tmp_path/'mlops_workbench'/'__init__.py').write_text('')
    return tmp_path

def both(argv, cwd, env):
    "The forked and the fresh run of `argv`."
    forked = cmdpool.run(argv, cwd, env, 60)
    assert forked is not None, cmdpool.summary()
    return forked, subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)

def test_a_forked_command_answers_as_a_fresh_one(folder):
    env = clean_env(MLWB_PROBE='x')
    for args in ([], ['3'], ['a message']):
        forked, fresh = both([sys.executable, '-c', PROBE, *args], folder, env)
        assert forked.returncode == fresh.returncode == (3 if args == ['3'] else 1 if args else 0)
        f, c = forked.stdout.splitlines(), fresh.stdout.splitlines()
        assert f[0] == c[0] == f"{['-c', *args]} {folder}  ['-c'] x", (f, c)
        assert f[1].split()[0] == c[1].split()[0] == str(folder/'mlops_workbench'/'__init__.py')
        assert f[2:] == c[2:] == ['thread joined', 'atexit ran'], (f, c)   # threads joined, then atexit, as at an end
        assert forked.stderr.splitlines()[0] == 'torch preloaded' and fresh.stderr.splitlines()[0] == 'torch not imported'
        assert forked.stderr.splitlines()[1:] == fresh.stderr.splitlines()[1:] == (['a message'] if args == ['a message'] else [])
    # each forked command seeds numpy from its own entropy, as a fresh import does
    seeds = {cmdpool.run([sys.executable, '-c', PROBE], folder, env, 60).stdout.splitlines()[1].split()[1] for _ in range(3)}
    assert len(seeds) == 3

def test_errors_signals_and_the_console_script(folder):
    env = clean_env()
    forked, fresh = both([sys.executable, '-c', 'import json\njson.loads("{")'], folder, env)
    assert forked.returncode == fresh.returncode == 1 and forked.stderr == fresh.stderr   # the same traceback, no pool frames
    forked, fresh = both([sys.executable, '-c', 'import os, signal; os.kill(os.getpid(), signal.SIGKILL)'], folder, env)
    assert forked.returncode == fresh.returncode == -9
    forked, fresh = both(['mlwb', 'promote', '--help'], folder, env)
    assert forked.returncode == fresh.returncode == 0 and forked.stdout == fresh.stdout and 'usage: mlwb promote' in forked.stdout
    forked, fresh = both(['mlwb', 'nope'], folder, env)
    assert forked.returncode == fresh.returncode == 2 and forked.stderr == fresh.stderr

def test_a_timeout_kills_the_command_and_what_it_started(folder):
    code = ("import subprocess, sys, time\n"
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            "import psutil; open('child.pid', 'w').write('%d %r' % (p.pid, psutil.Process(p.pid).create_time())); "
            "time.sleep(60)")
    with pytest.raises(subprocess.TimeoutExpired):
        cmdpool.run([sys.executable, '-c', code], folder, clean_env(), 3)
    import time
    from testkit import running
    pid, start = (folder/'child.pid').read_text().split()
    t0 = time.monotonic()   # that child, not a later process with its pid
    while running(int(pid), float(start)) and time.monotonic() - t0 < 10: time.sleep(0.1)
    assert not running(int(pid), float(start))

def test_what_it_cannot_serve_starts_fresh(folder):
    n = dict(cmdpool.FRESH)
    assert cmdpool.run([sys.executable, '-I', '-c', 'pass'], folder, clean_env(), 60) is None   # interpreter options
    assert cmdpool.run(['git', 'status'], folder, clean_env(), 60) is None                       # another program
    assert cmdpool.run([str(BIN/'dvc'), 'version'], folder, clean_env(), 60) is None             # not a forked script
    assert cmdpool.run([sys.executable, '-c', 'pass'], folder, clean_env(OMP_NUM_THREADS='1'), 60) is None
    why = {k: v - n.get(k, 0) for k, v in cmdpool.FRESH.items() if v != n.get(k, 0)}
    assert why.get('refused: environment differs in OMP_NUM_THREADS') == 1 and sum(why.values()) == 4, why
    # the variables read at run time may differ (the workbench's, DVC's, Jupyter's, pytest's, MLflow's server and user)
    code = 'import os; print(os.environ["MLWB_X"], os.environ["MLFLOW_TRACKING_URI"], os.environ["KMP_INIT_AT_FORK"])'
    env = {k: v for k, v in clean_env(MLWB_X='1', MLFLOW_TRACKING_URI='http://127.0.0.1:1').items() if not k.startswith('KMP_')}
    r = cmdpool.run([sys.executable, '-c', code], folder, env, 60)   # KMP_*: as after scikit-learn's import
    assert r is not None and r.stdout == '1 http://127.0.0.1:1 FALSE\n', cmdpool.summary()

def test_pythonpath_before_the_site_packages_unless_it_shadows_a_preloaded_module(folder, tmp_path_factory):
    extra = tmp_path_factory.mktemp('extra')
    (extra/'probe_mod.py').write_text('NAME = "extra"')
    (extra/'mlflow.db').write_text('')   # as in a repo copy: files and plain folders named like preloaded modules
    (extra/'torch').mkdir()              # are no modules
    code = 'import sys, probe_mod, yaml; print(probe_mod.NAME, sys.path[1], yaml.__file__)'
    forked, fresh = both([sys.executable, '-c', code], folder, clean_env(PYTHONPATH=str(extra)))
    assert forked.stdout == fresh.stdout and forked.stdout.startswith(f'extra {extra} '), (forked, fresh)
    for shadow in ('yaml.py', 'torch/__init__.py'):   # a fresh interpreter would import these: the server has others
        (extra/shadow).write_text('')
        n = cmdpool.FRESH.get('refused: environment differs in PYTHONPATH', 0)
        assert cmdpool.run([sys.executable, '-c', code], folder, clean_env(PYTHONPATH=str(extra)), 60) is None
        assert cmdpool.FRESH['refused: environment differs in PYTHONPATH'] == n + 1
        (extra/shadow).unlink()
