"""Leftovers of a killed Ray runtime (issue 8.9, Ray part): a private runtime killed with SIGKILL leaves its
/tmp/mlwb-ray-* folder; the next runtime that starts removes it, and never the folder of a runtime still running.
A run's shared runtime (issue 13.4) stops when idle and goes with its run, killed or not."""
import re, shutil, subprocess, sys, time
from pathlib import Path
import psutil
import pytest
from conftest import py, clean_env
from testkit import cluster_processes

pytestmark = pytest.mark.slow   # two private Ray runtimes


HOLD = """
import sys
from mlops_workbench.distributed import ray_runtime
with ray_runtime(num_cpus=1):
    print('ready', flush=True)
    sys.stdin.read()   # hold the runtime until stdin closes
"""

def descendants(pid) -> list:
    try:
        p = psutil.Process(pid)
        return [p] + p.children(recursive=True)
    except psutil.Error: return []

def ray_folder(pid) -> Path:
    "The /tmp/mlwb-ray-* folder of the runtime that process `pid` started (its GCS and raylet name it)."
    for p in descendants(pid):
        try: found = re.findall(r'/tmp/mlwb-ray-\w+', ' '.join(p.cmdline()))
        except psutil.Error: continue
        if found: return Path(found[0])
    raise AssertionError(f'no Ray folder under process {pid}')

def hold(tmp_path):
    p = subprocess.Popen([sys.executable, '-c', HOLD], cwd=tmp_path, env=clean_env(), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert p.stdout.readline().strip() == 'ready'
    return p

def test_the_next_runtime_removes_a_killed_runtimes_folder_but_not_a_live_ones(tmp_path):
    live = hold(tmp_path)
    try:
        killed = hold(tmp_path)
        live_dir, killed_dir = ray_folder(live.pid), ray_folder(killed.pid)
        # `make test` runs four test workers at once, and every local runtime that starts removes the stale folders it
        # finds: a process naming the folder on its command line keeps it "in use" until this test's next runtime looks
        guard = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', str(killed_dir)])
        try:
            procs = descendants(killed.pid)   # SIGKILL the driver and everything it started (Ray's agents included,
            for p in procs:                   # which would otherwise take up to ~150 s to notice and exit by themselves)
                try: p.kill()
                except psutil.Error: pass
            psutil.wait_procs(procs, timeout=60)
            killed.wait(timeout=60)
            assert killed_dir.exists()        # a SIGKILL leaves the folder
        finally:
            guard.kill(); guard.wait(30)
        start = "from mlops_workbench.distributed import ray_runtime\nwith ray_runtime(num_cpus=1): pass"
        py(start, tmp_path, timeout=300)
        assert not killed_dir.exists()    # before: there for ever, even after a successful rerun
        assert live_dir.exists() and live.poll() is None and (live_dir/'mlwb-owner').exists()
    finally:
        live.stdin.close()
        try: live.wait(timeout=120)
        except subprocess.TimeoutExpired:
            for p in descendants(live.pid): p.kill()
    assert live.returncode == 0 and not live_dir.exists()   # the live one ended normally and removed its own folder


JOIN = """
import sys
from mlops_workbench.distributed import ray_runtime
with ray_runtime() as ray:
    print(ray.get_runtime_context().gcs_address, flush=True)
    sys.stdin.read()   # hold the runtime until stdin closes
"""

def runtime_processes(folder) -> list:
    """The processes of a shared runtime: its server (named by its folder), Ray's daemons (in folder/ray) and Ray's
    client server, which names no folder but starts with the cluster's in its environment (before: left running)."""
    return cluster_processes(str(folder))

def wait_until(cond, bound=60, what=''):
    deadline = time.monotonic() + bound
    while not cond():
        assert time.monotonic() < deadline, f'still not {what} after {bound} s'
        time.sleep(0.2)

def test_a_runs_shared_runtime_stops_when_idle_and_when_its_run_dies(tmp_path):
    "Two stages of one run share its runtime; idle, it stops (the next stage starts it again); the run killed, it goes."
    import tempfile
    owner = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True)
    from mlops_workbench.kernels import mark_owner
    folder = Path(tempfile.mkdtemp(prefix='mlwb-ray-', dir='/tmp'))   # what kernels.ray_pool makes for a run: a folder
    mark_owner(folder)   # with an owner record, which other workers' `clean_stale` respects (without one, a folder idle
    # for 120 s counts as stale unless a process is seen using it: ci45 lost runtime.json mid-test, cause unconfirmed)
    env = clean_env(MLWB_RAY_RUN=str(folder), MLWB_RAY_RUN_OWNER=str(owner.pid), MLWB_RAY_IDLE_S='3')
    stages = []
    def stage():
        p = subprocess.Popen([sys.executable, '-c', JOIN], cwd=tmp_path, env=env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, start_new_session=True)
        stages.append(p)
        return p, p.stdout.readline().strip()
    try:
        (a, first), (b, second) = stage(), stage()
        assert first and first == second, (first, second)   # one runtime for both: one start, not two
        assert (folder/'runtime.json').exists() and len(list((folder/'leases').iterdir())) == 2
        for p in (a, b):
            p.stdin.close()
            assert p.wait(timeout=120) == 0
        wait_until(lambda: not runtime_processes(folder), 60, 'stopped while idle')   # 3 s without a lease
        assert folder.exists() and not (folder/'runtime.json').exists() and not (folder/'server.pid').exists()
        c, third = stage()   # a later stage of the same run starts it again
        assert third and (folder/'runtime.json').exists()
        owner.kill()         # the run dies (SIGKILL): its runtime goes with it, the stage's lease notwithstanding
        wait_until(lambda: not runtime_processes(folder) and not folder.exists(), 60, 'gone with its run')
    finally:
        owner.kill()
        for p in stages: p.kill()
        for p in runtime_processes(folder): p.kill()
        shutil.rmtree(folder, ignore_errors=True)
