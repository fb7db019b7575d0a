"""The stage runner under faults, on a tiny stage (seconds, not a pipeline): a dying kernel, stale temp files, a
stage started beside `dvc repro`, a corrupt DVC lock file, and what `mlwb run` prints."""
import json, os, signal, subprocess, sys, time
from pathlib import Path
import psutil, pytest
from conftest import sh, clean_env

TINY = '''import os, signal, time, ctypes, resource
print('start')
if how == 'kill': os.kill(os.getpid(), signal.SIGKILL)
if how == 'segv': ctypes.string_at(0)
if how == 'abort': os.abort()
if how == 'sleep': time.sleep(seconds)
if how == 'oom':
    resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))
    hog = bytearray(2**31)'''

def tiny_project(root: Path, how='none', seconds=0, dvc=False) -> Path:
    "A project with one stage, `tiny`, whose third code cell fails the way `how` says."
    (root/'nbs'/'stages').mkdir(parents=True, exist_ok=True)
    params = 'how = "none"  # one of: none, kill, segv, abort, sleep, oom\nseconds = 0  # in [0, inf)'
    cells = [(params, ['parameters']),
             ('x = 1', []), (TINY, []), ("print('end')", [])]
    nb = {'cells': [{'cell_type': 'code', 'id': f'c{i}', 'metadata': {'tags': t}, 'source': s, 'outputs': [],
                     'execution_count': None} for i, (s, t) in enumerate(cells)],
          'metadata': {'kernelspec': {'name': 'mlops-workbench', 'display_name': 'mlops-workbench',
                                      'language': 'python'}},
          'nbformat': 4, 'nbformat_minor': 5}
    (root/'nbs'/'stages'/'tiny.ipynb').write_text(json.dumps(nb))
    set_tiny(root, how, seconds)
    if dvc:
        (root/'dvc.yaml').write_text('stages:\n  tiny:\n    cmd: mlwb stage tiny --no-progress\n'
                                     '    params: [tiny.how, tiny.seconds]\n    outs: [reports/tiny.ipynb]\n')
        sh('git init -q && git config user.email t@t && git config user.name t && dvc init -q && git add -A && '
           'git commit -qm init', root)
    return root

def set_tiny(root, how, seconds=0): (root/'params.yaml').write_text(f'tiny:\n  how: {how}\n  seconds: {seconds}\n')

def leftovers(root, pid=None):
    "Temporary files of stage runs in reports/, and kernel-socket folders of process `pid`."
    tmp = [p for p in (root/'reports').glob('.tmp-*')] if (root/'reports').exists() else []
    return tmp + (list(Path('/tmp').glob(f'mlwb-kernel-{pid}-*')) if pid else [])

def wait_for(cond, what, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond(): return
        time.sleep(0.2)
    pytest.fail(f'timed out waiting for {what}')

def started(root, cell):
    "Whether papermill's temporary notebook shows code cell `cell` (1-based, injected cell counted) running."
    for p in leftovers(root):
        try: cells = [c for c in json.loads(p.read_text())['cells'] if c['cell_type'] == 'code']
        except (ValueError, KeyError, OSError): continue
        if len(cells) >= cell and cells[cell-1]['metadata'].get('papermill', {}).get('start_time'): return True
    return False

def kernels(pid):
    try: return [p for p in psutil.Process(pid).children(recursive=True) if 'ipykernel' in ' '.join(p.cmdline())]
    except psutil.Error: return []

def check_death(root, r, cause):
    "One line naming the stage and the cause, non-zero, no report under the real name, no temp files."
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines() == [f'mlwb: error: stage tiny: kernel died ({cause}) in cell 4 '
                                             f'(executed notebook: reports/failed/tiny.ipynb)'], r.stderr
    assert not (root/'reports'/'tiny.ipynb').exists() and not leftovers(root)

@pytest.mark.parametrize('how,cause', [('kill', 'SIGKILL'), ('segv', 'SIGSEGV'), ('abort', 'SIGABRT')])
def test_kernel_death_in_a_cell_ends_the_stage_with_one_line(tmp_path, how, cause):
    root = tiny_project(tmp_path, how)
    check_death(root, sh(['mlwb', 'stage', 'tiny', '--no-progress'], root, check=False, timeout=180), cause)

def test_kernel_killed_from_outside_ends_the_stage(tmp_path):
    "What the OOM killer does: SIGKILL from another process while a cell runs."
    root = tiny_project(tmp_path, 'sleep', 600)
    p = subprocess.Popen(['mlwb', 'stage', 'tiny', '--no-progress'], cwd=root, env=clean_env(), text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: started(root, 4) and kernels(p.pid), 'the kernel to run cell 4')
        kids = kernels(p.pid)
        for k in kids: k.kill()
        out, err = p.communicate(timeout=120)   # before the fix: no exit at all
    finally:
        if p.poll() is None: p.kill()
    check_death(root, subprocess.CompletedProcess(p.args, p.returncode, out, err), 'SIGKILL')
    assert not leftovers(root, p.pid)

def test_out_of_memory_in_a_cell_is_one_line(tmp_path):
    root = tiny_project(tmp_path, 'oom')
    r = sh(['mlwb', 'stage', 'tiny', '--no-progress'], root, check=False, timeout=180)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith('mlwb: error: stage tiny failed in cell 4: MemoryError')

def test_stale_temp_files_of_dead_runs_are_removed_and_time_is_shown(tmp_path):
    root = tiny_project(tmp_path)
    dead = subprocess.Popen(['true'])
    dead.wait()
    (root/'reports').mkdir()
    stale = [root/'reports'/f'.tmp-tiny-{dead.pid}.ipynb', root/'reports'/f'.tmp-train-{dead.pid}.runs']
    for f in stale: f.write_text('{}')
    live = root/'reports'/f'.tmp-tiny-{os.getpid()}.ipynb'   # a run that is still going: kept
    live.write_text('{}')
    sockets = Path('/tmp')/f'mlwb-kernel-{dead.pid}-test'
    sockets.mkdir(exist_ok=True)
    r = sh(['mlwb', 'stage', 'tiny', '--no-progress'], root, timeout=180)
    assert r.stdout.strip().splitlines()[-1].startswith('stage tiny done in ')
    assert r.stdout.strip().endswith(' s: wrote reports/tiny.ipynb')
    assert not any(f.exists() for f in stale) and not sockets.exists() and live.exists()

def test_direct_stage_is_locked_out_beside_dvc_repro(tmp_path):
    root = tiny_project(tmp_path, 'sleep', 600, dvc=True)
    dvc = subprocess.Popen(['dvc', 'repro'], cwd=root, env=clean_env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: started(root, 4), 'dvc repro to run the stage')
        r = sh(['mlwb', 'stage', 'tiny', '--no-progress'], root, check=False, timeout=120)
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert 'mlwb: error: stage tiny: `dvc repro` (pid' in r.stderr and 'is running in this project' in r.stderr
    finally:
        os.killpg(dvc.pid, signal.SIGTERM)
        dvc.wait(60)
    wait_for(lambda: not leftovers(root), 'the killed run to clean up')
    stage = subprocess.Popen(['mlwb', 'stage', 'tiny', '--no-progress'], cwd=root, env=clean_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:   # and the other way round: a dvc repro beside a stage started by hand stops at DVC's lock
        wait_for(lambda: started(root, 4), 'the stage to run')
        r = sh(['dvc', 'repro'], root, check=False, timeout=120)
        assert r.returncode != 0 and 'Unable to acquire lock' in r.stdout + r.stderr, r.stdout + r.stderr
    finally:
        stage.terminate()
        stage.wait(60)
    assert not leftovers(root, stage.pid) and not (root/'reports'/'tiny.ipynb').exists()
    set_tiny(root, 'none')   # mlwb run: the stage's time, none of DVC's git / dvc push hints
    r = sh(['mlwb', 'run'], root, timeout=180)
    assert 'stage tiny done in ' in r.stdout and (root/'reports'/'tiny.ipynb').exists()
    assert 'dvc push' not in r.stdout + r.stderr and 'git add' not in r.stdout + r.stderr, r.stdout

def test_corrupt_dvc_lock_file_is_named(tmp_path):
    root = tiny_project(tmp_path, dvc=True)
    lock = root/'.dvc'/'tmp'/'rwlock'
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_bytes(os.urandom(64) + b'\xff\xfe')
    for cmd in (['mlwb', 'run'], ['mlwb', 'check'], ['mlwb', 'stage', 'tiny', '--no-progress']):
        r = sh(cmd, root, check=False, timeout=120)
        want = (f"mlwb: error: {lock}: DVC's lock file is corrupt (UnicodeDecodeError); "
                "delete it when no `dvc` command runs")
        assert r.returncode == 1 and r.stderr.strip().splitlines() == [want], (cmd, r.stderr)
    assert not (root/'reports'/'tiny.ipynb').exists()

def test_corrupt_params_and_notebook_files_are_named(tmp_path):
    root = tiny_project(tmp_path)
    saved = (root/'params.yaml').read_bytes()
    (root/'params.yaml').write_bytes(b'\xff\xfe\x00tiny: [')
    r = sh(['mlwb', 'check'], root, check=False)
    assert r.returncode == 1 and r.stderr.startswith(f"mlwb: error: {root}/params.yaml: not valid YAML"), r.stderr
    (root/'params.yaml').write_bytes(saved)
    (root/'nbs'/'stages'/'tiny.ipynb').write_bytes(b'\x8f junk')
    r = sh(['mlwb', 'check'], root, check=False)
    assert r.returncode == 1
    assert r.stderr.startswith(f"mlwb: error: {root}/nbs/stages/tiny.ipynb: not a readable notebook"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
