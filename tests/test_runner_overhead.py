"""The runner's start-up shortcuts keep its guarantees (issue 13.3): the kernel, launched before papermill is imported,
is a fresh process per stage, used once and gone when the stage ends, also when the run fails between its launch and
the first cell; and the client no longer waits for iopub silence, so no cell output is lost or misplaced."""
import json, os
from pathlib import Path
import psutil
from conftest import sh
from testkit import running
from test_runner_faults import tiny_project, kernels

PIDS = "import os, psutil\nprint('kernel', os.getpid(), os.getppid(), psutil.Process().create_time())"

def kernel_pids(root: Path) -> tuple:
    "The (kernel pid, its parent pid, the kernel's start) that the tiny stage's report printed."
    nb = json.loads((root/'reports'/'tiny.ipynb').read_text())
    out = [''.join(o.get('text', '')) for c in nb['cells'] if c['cell_type'] == 'code' for o in c['outputs']]
    pid, ppid, start = next(t for t in out if t.startswith('kernel ')).split()[1:4]
    return int(pid), int(ppid), float(start)

def add_cell(root: Path, src: str):
    "Append a code cell to the tiny stage's notebook."
    p = root/'nbs'/'stages'/'tiny.ipynb'
    nb = json.loads(p.read_text())
    nb['cells'].append({'cell_type': 'code', 'id': f'x{len(nb["cells"])}', 'metadata': {}, 'source': src,
                        'outputs': [], 'execution_count': None})
    p.write_text(json.dumps(nb))

def test_each_stage_run_gets_its_own_kernel_which_ends_with_it(tmp_path):
    root = tiny_project(tmp_path)
    add_cell(root, PIDS)
    seen = []
    for _ in range(2):
        r = sh(['mlwb', 'stage', 'tiny', '--no-progress'], root, timeout=180)
        assert 'stage tiny done' in r.stdout, r.stdout + r.stderr
        seen.append(kernel_pids(root))
    (k1, runner1, start1), (k2, runner2, start2) = seen
    assert k1 != k2 and runner1 != runner2          # a new kernel, started by a new runner, each time
    assert not running(k1, start1) and not running(k2, start2)   # those kernels: not later processes with their pids
    nb = json.loads((root/'reports'/'tiny.ipynb').read_text())
    code = [c for c in nb['cells'] if c['cell_type'] == 'code']
    assert [c['execution_count'] for c in code] == list(range(1, len(code) + 1))   # complete, in order, once each
    texts = [''.join(''.join(o.get('text', '')) for o in c['outputs']) for c in code]
    assert texts[-3:-1] == ['start\n', 'end\n'], texts   # each cell's output in its own cell

def test_a_failure_between_kernel_launch_and_execution_leaves_no_kernel(tmp_path):
    from mlops_workbench.config import load_config
    from mlops_workbench.stages import _execute
    root = tiny_project(tmp_path)
    cfg = load_config(root, env={})
    sockets = tmp_path/'sockets'
    sockets.mkdir()
    try:
        _execute('tiny', root/'missing.ipynb', root/'out.ipynb', {}, cfg, sockets, False)
    except Exception as e: err = e
    else: err = None
    assert err is not None and 'missing.ipynb' in str(err)     # papermill could not read it: after the launch
    gone, alive = psutil.wait_procs(kernels(os.getpid()), timeout=10)
    assert not alive, [p.cmdline() for p in alive]
    assert not kernels(os.getpid()) and not (root/'out.ipynb').exists()
