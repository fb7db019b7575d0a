"""`mlwb serve` with autoscaling (serve.min_replicas 1, serve.max_replicas 3): load from several client processes adds
replicas, which come up serving the champion of that moment and take part in a swap; no request fails while the
replicas come and go; without load the server goes back to one replica. The replica counts come from Ray Serve's status
API, which the server records in `.mlwb/serve.json`."""
import json, os, shutil, subprocess, sys, time
from pathlib import Path
import pytest
from conftest import clean_env, py, set_params, sh
from testkit import free_port
from test_serve_api import CLIENT, MLWB, REGISTER, row

pytestmark = pytest.mark.slow

PROMOTE = r'''
import sys
from mlops_workbench.registry import promote
promote(int(sys.argv[1]), 'autoscale test')
'''

def _running(root: Path) -> int:
    "Running replicas, as the server last recorded them (0 before the first record)."
    try: return json.loads((root/'.mlwb'/'serve.json').read_text()).get('replicas', {}).get('RUNNING', 0)
    except (OSError, ValueError): return 0

def _wait(what: str, ok, timeout: float, log: Path, step: float = 0.5):
    "Wait for `ok()` at most `timeout` seconds; fail with the server's log otherwise."
    t0 = time.monotonic()
    while not ok():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"{what}: not within {timeout:.0f} s\n{log.read_text()[-3000:]}")
        time.sleep(step)
    return time.monotonic() - t0

def _versions(url: str, n: int = 40) -> list:
    "(replica, model version) of `n` GET /version answers (the proxy spreads them over the replicas)."
    import httpx
    with httpx.Client(timeout=10) as c:
        return [(d['replica'], d['model_version']) for d in (c.get(url + '/version').json() for _ in range(n))]

def test_replicas_follow_load(project, tmp_path):
    root = Path(shutil.copytree(project, tmp_path/'p', symlinks=True,
                                ignore=shutil.ignore_patterns('milvus.db*', '.mlwb')))
    set_params(root, serve={'min_replicas': 1, 'max_replicas': 3, 'target_ongoing_requests': 1.0,
                            'upscale_delay_s': 2.0, 'downscale_delay_s': 8.0, 'look_back_s': 4.0, 'poll_s': 2.0})
    assert py(REGISTER, root).stdout.split()[-2:] == ['2', '3']      # v1 champion, v3 challenger (shadowed)
    port = free_port()
    env = clean_env(MLWB_SERVE_PORT=str(port), PYTHONPATH=str(root))
    log_path, url = root/'serve.log', f'http://127.0.0.1:{port}'
    log = open(log_path, 'w')
    p = subprocess.Popen(MLWB + ['serve'], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    stop, clients, timeline = root/'stop-clients', [], []
    outs = [root/f'client{i}.json' for i in range(3)]   # 3 requests in progress / target 1 -> 3 replicas
    try:
        _wait('mlwb serve starts', lambda: 'serving ' in log_path.read_text() or p.poll() is not None, 240, log_path)
        assert p.poll() is None, log_path.read_text()[-3000:]
        _wait('the server records one running replica', lambda: _running(root) == 1, 30, log_path)
        # the champion moves before any replica is added: the new replicas must serve v2, not v1 (the deployed one)
        py(PROMOTE.replace('sys.argv[1]', '2'), root, env=env)
        _wait('v2 served', lambda: set(v for _, v in _versions(url, 5)) == {2}, 60, log_path)
        body = json.dumps({'rows': [list(row(root).values())] * 8})
        t_load = time.time()
        clients = [subprocess.Popen([sys.executable, '-c', CLIENT, url, body, str(stop), str(o)], cwd=root, env=env)
                   for o in outs]
        def more():
            timeline.append((time.time(), _running(root)))
            return timeline[-1][1] >= 2
        up = _wait('load adds a replica', more, 180, log_path)
        seen = _versions(url)
        assert len({r for r, _ in seen}) >= 2 and {v for _, v in seen} == {2}, seen   # a new replica serves v2
        # a swap with every replica taking part, under load (back to v1: each replica loads it, none has it loaded)
        t_move = time.time()
        py(PROMOTE.replace('sys.argv[1]', '1'), root, env=env)
        t_moved = time.time()
        _wait('every replica serves v1', lambda: {v for _, v in _versions(url, 20)} == {1}, 90, log_path)
        t_swapped = time.time()
        time.sleep(2)
        t_unload = time.time()
        stop.touch()
        for c in clients: assert c.wait(60) == 0
        def back():
            timeline.append((time.time(), _running(root)))
            return timeline[-1][1] == 1
        down = _wait('back to one replica without load', back, 120, log_path)
        peak = max(n for _, n in timeline)
        assert peak <= 3, timeline
        res = sorted((tuple(x) for o in outs for x in json.loads(o.read_text())), key=lambda x: x[0])
        failed = [x for x in res if x[2] != 200]
        assert not failed and len(res) > 50, (len(res), failed[:5])
        assert {x[3] for x in res if x[1] < t_move} == {2}                   # before the move: v2 only
        assert {x[3] for x in res if x[0] > t_swapped} == {1}                # after every replica swapped: v1 only
        assert 'replicas running (autoscaling 1-3)' in log_path.read_text()
        changes = [(round(t - t_load, 1), n) for k, (t, n) in enumerate(timeline) if k == 0 or n != timeline[k - 1][1]]
        switched = [l for l in log_path.read_text().splitlines() if 'switched in' in l or 'replicas running' in l]
        print(f"\nautoscaling: {len(res)} requests from {len(outs)} clients, {len(failed)} failed; 1 -> "
              f"{peak} replicas (2 running {up:.1f} s after the load started), back to 1 {down:.1f} s after it stopped"
              f"; swap under load to v1: promote took {t_moved - t_move:.1f} s, every replica answered v1 "
              f"{t_swapped - t_moved:.1f} s later\nrunning replicas (s since the load started, n): {changes}\n"
              + '\n'.join(switched))
        (root/'autoscale-figures.json').write_text(json.dumps(dict(
            requests=len(res), failed=len(failed), peak=peak, up_s=up, down_s=down, load_s=t_unload - t_load,
            timeline=[(t - t_load, n) for t, n in timeline])))
        r = sh(MLWB + ['serve', '--stop'], root, env=env, timeout=200)
        assert r.stdout.startswith('stopped the server'), r.stdout
        assert p.wait(60) == 0
    finally:
        stop.touch()
        for c in clients:
            if c.poll() is None: c.kill()
        if p.poll() is None:
            try: sh(MLWB + ['serve', '--stop'], root, env=env, timeout=200, check=False)
            finally:
                if p.poll() is None: os.killpg(p.pid, 9)
                p.wait(60)
        log.close()
