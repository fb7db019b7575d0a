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

def test_test_costs_per_file():
    rows = [dict(test='tests/a.py::x', wall=2.0, cpu=3.0), dict(test='tests/a.py::y', wall=1.0, cpu=1.0),
            dict(test='tests/b.py::z', wall=4.0, cpu=2.0)]
    files = test_costs.per_file(rows)
    assert files['tests/a.py'] == {'tests': 2, 'wall': 3.0, 'cpu': 4.0} and files['tests/b.py']['tests'] == 1
