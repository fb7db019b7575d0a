"""The kernel pool under a real `mlwb run` (a tiny three-stage DVC project, seconds per stage): the first stage starts
cold, the later ones are fresh forks of the pool; a kernel killed from outside ends its stage with one line; a killed
run leaves no pool, no kernel and no report behind; no pool outlives its run."""
import json, os, signal, subprocess, time
from pathlib import Path
import pytest
from conftest import sh, clean_env
import testkit

STAGES = ['a', 'b', 'c']
CELL = '''import json, os, signal, time, psutil
from pathlib import Path
Path('out').mkdir(exist_ok=True)
me = dict(pid=os.getpid(), ppid=os.getppid(), stage_pid=int(os.environ['JPY_PARENT_PID']),
          pool=os.environ.get('MLWB_KERNEL_POOL'))
me['start'] = {str(pid): psutil.Process(pid).create_time() for pid in (me['pid'], me['ppid'], me['stage_pid'])}
Path('out', f'{name}.started').write_text(json.dumps(me))
if how == 'kill': os.kill(os.getpid(), signal.SIGKILL)
if how == 'sleep': time.sleep(seconds)
Path('out', f'{name}.json').write_text(json.dumps(me))'''

def pool_project(root: Path, **hows) -> Path:
    "Three stages a -> b -> c under DVC, each recording its kernel's pid and parent; `c='sleep'` etc. sets one's fate."
    (root/'nbs'/'stages').mkdir(parents=True)
    for s in STAGES:
        cells = [(f'name = "{s}"\nhow = "none"  # one of: none, kill, sleep\nseconds = 0  # in [0, inf)', ['parameters']),
                 (CELL, [])]
        nb = {'cells': [{'cell_type': 'code', 'id': f'c{i}', 'metadata': {'tags': t}, 'source': src, 'outputs': [],
                         'execution_count': None} for i, (src, t) in enumerate(cells)],
              'metadata': {'kernelspec': {'name': 'mlops-workbench', 'display_name': 'mlops-workbench',
                                          'language': 'python'}}, 'nbformat': 4, 'nbformat_minor': 5}
        (root/'nbs'/'stages'/f'{s}.ipynb').write_text(json.dumps(nb))
    (root/'params.yaml').write_text(''.join(f'{s}:\n  name: {s}\n  how: {hows.get(s, "none")}\n  seconds: 600\n'
                                            for s in STAGES))
    deps = {'a': [], 'b': ['out/a.json'], 'c': ['out/b.json']}
    (root/'dvc.yaml').write_text('stages:\n' + ''.join(
        f'  {s}:\n    cmd: mlwb stage {s} --no-progress\n    params: [{s}.how]\n'
        f'    deps: [nbs/stages/{s}.ipynb{"".join(", " + d for d in deps[s])}]\n    outs: [out/{s}.json, reports/{s}.ipynb]\n'
        for s in STAGES))
    sh('git init -q && git config user.email t@t && git config user.name t && dvc init -q && git add -A && '
       'git commit -qm init', root)
    return root


def gone(k:dict, keys, timeout=20) -> list:
    "Those of the processes `keys` of a kernel's record `k` ('pid', 'ppid', ...) still running after `timeout` seconds."
    live = lambda key: testkit.running(k[key], k['start'][str(k[key])])   # that process, not a later one with its pid
    t0 = time.time()
    while time.time() - t0 < timeout and any(map(live, keys)): time.sleep(0.1)
    return [key for key in keys if live(key)]

def test_later_stages_get_fresh_forks_of_the_pool_and_the_pool_ends_with_the_run(tmp_path):
    root = pool_project(tmp_path)
    r = sh(['mlwb', 'run'], root, timeout=300)
    assert 'kernel pool' not in r.stdout + r.stderr, r.stdout + r.stderr   # no cold fallback, no pool error
    k = {s: json.loads((root/'out'/f'{s}.json').read_text()) for s in STAGES}
    assert k['a']['ppid'] == k['a']['stage_pid']   # the first kernel of a run starts cold, as the stage's child
    assert k['b']['ppid'] == k['c']['ppid'] != k['b']['stage_pid']   # the later ones: children of one pool server
    assert len({k[s]['pid'] for s in STAGES}) == 3   # a fresh process for each stage
    assert k['a']['pool'] == k['c']['pool'] and not Path(k['a']['pool']).exists()   # one pool for the run, removed
    assert not gone(k['b'], ['ppid'])
    assert 'Running stage' not in sh(['mlwb', 'run'], root, timeout=120).stdout   # a no-op run starts nothing

def test_a_pooled_kernel_killed_in_a_cell_ends_its_stage_with_one_line(tmp_path):
    root = pool_project(tmp_path, c='kill')
    r = sh(['mlwb', 'run'], root, check=False, timeout=300)
    assert r.returncode != 0
    started = json.loads((root/'out'/'c.started').read_text())
    assert started['ppid'] != started['stage_pid']   # it was a fork of the pool
    assert 'mlwb: error: stage c: kernel died (SIGKILL) in cell 3 (executed notebook: reports/failed/c.ipynb)' in r.stderr, r.stderr
    assert not (root/'reports'/'c.ipynb').exists() and (root/'reports'/'b.ipynb').exists()
    assert not gone(started, ['ppid'])   # the pool ended with the run

@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_run_leaves_no_pool_kernel_or_report(tmp_path, sig):
    "Ctrl-C-like (SIGTERM to the run's process group) and crash-like (SIGKILL to it: nothing can clean up)."
    root = pool_project(tmp_path, c='sleep')
    p = subprocess.Popen(['mlwb', 'run'], cwd=root, env=clean_env(), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        t0 = time.time()
        while not (root/'out'/'c.started').exists():
            assert time.time() - t0 < 240 and p.poll() is None, 'stage c did not start'
            time.sleep(0.2)
        kernel = json.loads((root/'out'/'c.started').read_text())
        assert kernel['ppid'] != kernel['stage_pid']   # a fork of the pool, in the pool's own session
        os.killpg(p.pid, sig)
        p.wait(60)
    finally:
        if p.poll() is None: os.killpg(p.pid, signal.SIGKILL)
    assert not gone(kernel, ['pid', 'ppid', 'stage_pid']), 'a kernel, the pool or the stage outlived the run'
    assert not testkit.pool_servers({p.pid}) and not Path(kernel['pool']).exists()
    assert not (root/'reports'/'c.ipynb').exists() and not (root/'out'/'c.json').exists()
