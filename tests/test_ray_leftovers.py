"""Leftovers of a killed Ray runtime (issue 8.9, Ray part): a private runtime killed with SIGKILL leaves its
/tmp/mlwb-ray-* folder; the next runtime that starts removes it, and never the folder of a runtime still running."""
import re, subprocess, sys, time
from pathlib import Path
import psutil
import pytest
from conftest import py, clean_env

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
        procs = descendants(killed.pid)   # SIGKILL the driver and everything it started (Ray's agents included, which
        for p in procs:                   # would otherwise take up to ~150 s to notice and exit by themselves)
            try: p.kill()
            except psutil.Error: pass
        psutil.wait_procs(procs, timeout=60)
        killed.wait(timeout=60)
        assert killed_dir.exists()        # a SIGKILL leaves the folder
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
