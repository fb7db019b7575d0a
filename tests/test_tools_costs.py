"""The cost tools the test suite's figures come from (bench/README.md): `tools/proc_costs.py` names each process's kind
and sums CPU per kind; `tools/test_costs.py` sums the per-test log per file."""
import json, subprocess, sys
from conftest import REPO
import proc_costs, test_costs   # conftest puts tools/ on sys.path

def test_kinds_of_processes():
    k = proc_costs.kind
    assert k('/v/bin/python -m ipykernel_launcher -f /tmp/k.json') == 'papermill kernel, cold'
    assert k('ray::RayTrainWorker.init_train_context') == 'Ray worker'
    assert k('/v/lib/python3.11/site-packages/ray/core/src/ray/gcs/gcs_server --gcs_server_port=1') == 'Ray GCS'
    assert k('/v/bin/python /v/bin/mlwb history --json') == 'mlwb history'
    assert k('/v/bin/python -c import sys; from mlops_workbench.cli import main; sys.exit(main()) serve') == 'mlwb serve'
    assert k('/v/bin/python /v/bin/dvc repro train') == 'dvc repro'
    assert k('/v/bin/python -m pip install -q x') == 'pip'
    assert k('/v/bin/python -c \nimport json') == 'python -c (a helper interpreter)'
    assert k("/v/bin/python -c import sys; path = list(sys.path); sys.path.insert(0, '/r/tools'); import cmdpool; "
             "sys.exit(cmdpool.serve('/tmp/p', 1, path))") == "tests' command pool (server and forked commands)"
    assert k('git rev-parse HEAD') == 'git'

def test_report_sums_per_kind_and_shows_what_was_not_sampled():
    data = dict(command='make x', wall=10.0, machine=10.0,
                procs=[[1, '/v/bin/mlwb history', 2.0, 0], [2, '/v/bin/mlwb history --json', 1.0, 0], [3, 'git status', 0.5, 0]])
    rep = proc_costs.report(data)
    assert '| mlwb history | 2 | 3.0 | 30.0% | 1.50 |' in rep and '| git | 1 | 0.5 | 5.0% | 0.50 |' in rep
    assert '| not sampled (processes shorter than the interval; the kernel) | | 6.5 | 65.0% | |' in rep
    assert rep.index('mlwb history') < rep.index('| git |')   # largest first
    only = proc_costs.report(data, only='mlwb history')
    assert '/v/bin/mlwb history --json' in only and 'git status' not in only

def test_report_by_owner_follows_folders_then_parents():
    "A process is charged to its own folder's test or tutorial, else to its nearest ancestor's; an orphan to '?'."
    data = dict(command='make x', wall=10.0, machine=10.0, procs=[
        [10, 'python -m pytest', 1.0, 1, '/r'],
        [11, '/v/bin/mlwb run', 2.0, 10, '/tmp/pytest-of-u/pytest-3/popen-gw1/test_retrain_from_drift0/repo'],
        [12, 'ray::IDLE', 3.0, 11, '/'],                                 # a Ray worker: its folder says nothing, its parent's does
        [13, '/v/bin/python -m ipykernel_launcher', 1.5, 1, '/tmp/mlwb-tutorials-ab/04_operate/repo/nbs/tutorials'],
        [14, 'git status', 0.5, 99, '/']])                               # a parent not sampled
    procs = {r[0]: (r[4], r[3]) for r in data['procs']}
    assert proc_costs.owner(12, procs) == 'test test_retrain_from_drift' == proc_costs.owner(11, procs)
    assert proc_costs.owner(13, procs) == 'tutorial 04_operate' and proc_costs.owner(14, procs) == '?'
    rep = proc_costs.by_owner(data)
    assert '| test test_retrain_from_drift (Ray worker 3; mlwb run 2) | 2 | 5.0 | 50.0% | 2.50 |' in rep, rep

def test_a_command_is_run_and_sampled(tmp_path):
    """A child that burns a fixed amount of CPU (not a wall-clock span: the machine may be loaded), then lives on for 3 s
    so that the sampler sees it after its work, is listed under its kind; the exit code is the command's."""
    out = tmp_path/'p.json'
    child = 'import time  # proc-costs-probe\nsum(range(20_000_000))\ntime.sleep(3)\nraise SystemExit(3)'
    r = subprocess.run([sys.executable, str(REPO/'tools'/'proc_costs.py'), '--out', str(out), '--every', '0.1', '--',
                        sys.executable, '-c', child], capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, r.stderr
    data = json.loads(out.read_text())
    mine = [p for p in data['procs'] if 'proc-costs-probe' in p[1] and 'proc_costs.py' not in p[1]]
    assert len(mine) == 1 and mine[0][2] > 0.1, mine   # ~0.5 CPU-s of work, whatever the load
    assert proc_costs.kind(mine[0][1]) == 'python -c (a helper interpreter)' and 'python -c (a helper interpreter)' in r.stderr
    assert mine[0][4] == str(REPO)   # its working folder, for the report by owner

def test_test_costs_per_file():
    rows = [dict(test='tests/a.py::x', wall=2.0, cpu=3.0), dict(test='tests/a.py::y', wall=1.0, cpu=1.0),
            dict(test='tests/b.py::z', wall=4.0, cpu=2.0)]
    files = test_costs.per_file(rows)
    assert files['tests/a.py'] == {'tests': 2, 'wall': 3.0, 'cpu': 4.0} and files['tests/b.py']['tests'] == 1
