"""tools/docs_exec.execute_tutorial's bound: a tutorial that runs past it is stopped with its kernel (the tests run the
tutorials in a thread pool, and every wait there is bounded), with a one-line error naming it."""
import json, sys, time
from pathlib import Path
import psutil
import pytest
from conftest import REPO

sys.path.insert(0, str(REPO/'tools'))
import docs_exec, testkit

pytestmark = pytest.mark.slow   # papermill and a kernel

def notebook(path: Path, code: str) -> Path:
    nb = {'cells': [{'cell_type': 'code', 'execution_count': None, 'id': 'c1', 'metadata': {}, 'outputs': [],
                     'source': code}],
          'metadata': {'kernelspec': {'name': docs_exec.KERNEL, 'display_name': 'Python (mlops-workbench)',
                                      'language': 'python'}},
          'nbformat': 4, 'nbformat_minor': 5}
    path.write_text(json.dumps(nb))
    return path

ME = "__import__('os').getpid(), __import__('psutil').Process().create_time()"   # a process: its pid and its start

def gone(pid_start: str) -> bool:
    "The process `pid start` (as `ME` prints them) ended: a zombie counts as ended, a later process with its pid does not count."
    pid, start = pid_start.split()
    return not testkit.running(int(pid), float(start))

def test_a_tutorial_past_its_bound_is_stopped_with_its_kernel(tmp_path):
    pid_file = tmp_path/'kernel.pid'
    nb = notebook(tmp_path/'slow.ipynb', f"import time\nopen({str(pid_file)!r}, 'w').write('%d %r' % ({ME}))\n"
                                         "time.sleep(600)")
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r'tutorial slow.ipynb did not finish in 45 s: stopped'):
        docs_exec.execute_tutorial(nb, tmp_path/'out'/'slow.ipynb', bound=45)
    assert time.monotonic() - t0 < 120
    assert pid_file.exists(), 'the kernel did not start in 45 s'
    assert gone(pid_file.read_text()), 'the kernel outlived its tutorial'
    left = [p for p in psutil.process_iter(['cmdline']) if str(tmp_path) in ' '.join(p.info['cmdline'] or [])]
    assert not left, [p.info['cmdline'] for p in left]   # papermill

def test_a_tutorial_within_its_bound_runs(tmp_path):
    nb = notebook(tmp_path/'quick.ipynb', "print('hello')")
    out = docs_exec.execute_tutorial(nb, tmp_path/'out'/'quick.ipynb', bound=300)
    cell = json.loads(out.read_text())['cells'][0]
    assert cell['outputs'][0]['text'] in ('hello\n', ['hello\n'])

def test_a_library_notebook_stops_its_kernel_and_leaves_no_connection_file(tmp_path):
    "execute_notebook (the docs build) runs each notebook on its own kernel: stopped when the notebook ends, not when the build does."
    nb = notebook(tmp_path/'lib.ipynb', f"from ipykernel import get_connection_file\nprint(*({ME}), get_connection_file())")
    out = docs_exec.execute_notebook(nb, tmp_path/'out'/'lib.ipynb', timeout=120)
    text = json.loads(out.read_text())['cells'][0]['outputs'][0]['text']
    pid, start, conn = ''.join(text).split()
    assert gone(f'{pid} {start}'), 'the kernel outlived its notebook'
    assert not Path(conn).exists(), f'{conn}: the connection file (with its key) was left behind'

def test_library_notebooks_run_on_forks_of_one_pool_that_ends_with_the_build(tmp_path):
    "The build's library notebooks share a kernel pool (`library_pool`): each kernel a fork of its server, which had imported torch."
    code = f"import os, sys\nprint(*({ME}), os.getppid(), 'torch' in sys.modules)"
    with docs_exec.library_pool(REPO, 2) as pool:
        server = int((pool/'server.pid').read_text())
        server_start = testkit.started(server)
        seen = []
        for name in ('a', 'b'):
            out = docs_exec.execute_notebook(notebook(tmp_path/f'{name}.ipynb', code), tmp_path/'out'/f'{name}.ipynb', 120, pool)
            seen.append(''.join(json.loads(out.read_text())['cells'][0]['outputs'][0]['text']).split())
    assert [s[2:] for s in seen] == [[str(server), 'True']] * 2, seen   # forks of the server: torch already imported
    assert all(gone(f'{s[0]} {s[1]}') for s in seen) and gone(f'{server} {server_start}') and not pool.exists()   # kernels, then the pool, ended
    with docs_exec.library_pool(REPO, 1) as one: assert one is None   # one notebook: a cold kernel costs less
