"""`mlwb serve` on a copy of the pipeline project: one server (private local Ray, loopback) for the API and bad-request
tests, the zero-downtime swap under load from several client processes, and `mlwb serve --stop`."""
import json, os, shutil, socket, subprocess, sys, threading, time
from pathlib import Path
import pytest
from conftest import clean_env, py, set_params, sh
from testkit import free_port, still_running

MLWB = [sys.executable, '-c', 'import sys; from mlops_workbench.cli import main; sys.exit(main())']

REGISTER = r'''
import numpy as np, torch
from mlops_workbench.config import load_config, read_json
from mlops_workbench.train import build_model
from mlops_workbench.tracking import stage_run
from mlops_workbench.registry import register_model
cfg = load_config(); meta = read_json(cfg.path('data', 'prepared', 'meta.json'))
X = np.zeros((5, len(meta['features'])), dtype='float32')
for seed in (1, 2):
    torch.manual_seed(seed)
    with stage_run('train', fingerprint=meta['fingerprint'], cfg=cfg) as (c, rid):
        print(register_model(build_model('mlp', X.shape[1], len(meta['classes']), hidden=[16]), X, rid, cfg).version)
'''

def _get(url, timeout=10):
    import httpx
    return httpx.get(url, timeout=timeout)

@pytest.fixture(scope='module')
def server(project, tmp_path_factory):
    "A copy of the pipeline project with versions 2 and 3 registered (v1 champion), served by `mlwb serve`."
    root = Path(shutil.copytree(project, tmp_path_factory.mktemp('serve')/'p', symlinks=True,
                                ignore=shutil.ignore_patterns('milvus.db*', '.mlwb')))
    set_params(root, serve={'max_ongoing_requests': 4, 'poll_s': 2.0})
    vs = py(REGISTER, root).stdout.split()
    assert vs[-2:] == ['2', '3'], vs
    port = free_port()
    env = clean_env(MLWB_SERVE_PORT=str(port), PYTHONPATH=str(root))
    log = open(root/'serve.log', 'w')
    p = subprocess.Popen(MLWB + ['serve'], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    url, t0 = f'http://127.0.0.1:{port}', time.monotonic()
    while 'serving ' not in (root/'serve.log').read_text():
        if p.poll() is not None or time.monotonic() - t0 > 240:
            p.kill(); pytest.fail(f"mlwb serve did not start in 240 s:\n{(root/'serve.log').read_text()[-3000:]}")
        time.sleep(0.5)
    yield dict(root=root, url=url, port=port, proc=p, env=env)
    if p.poll() is None:   # a test failed before the stop test: stop it, and never leave it running
        try: sh(MLWB + ['serve', '--stop'], root, env=env, timeout=200)
        finally:
            if p.poll() is None: os.killpg(p.pid, 9)
            p.wait(60)
    log.close()

def row(root, value=1.0) -> dict:
    meta = json.loads((root/'data'/'prepared'/'meta.json').read_text())
    return {f: value for f in meta['features']}

def test_predict_and_probes(server):
    import httpx
    u, r1 = server['url'], row(server['root'])
    assert _get(u + '/healthz').json() == {'status': 'ok'}
    ready = _get(u + '/readyz'); assert ready.status_code == 200 and ready.json()['model_version'] == 1
    v = _get(u + '/version').json()
    assert v['model_version'] == 1 and v['alias'] == 'champion' and v['features'] == 64
    assert len(v['data_fingerprint']) == 64
    one = httpx.post(u + '/predict', json=r1, timeout=10).json()
    assert one['model_version'] == 1 and one['run_id'] == v['run_id']
    assert one['data_fingerprint'] == v['data_fingerprint']
    assert len(one['request_id']) == 32 and len(one['predictions']) == 1
    p = one['predictions'][0]
    assert p['class'] in v['classes'] and set(p['probabilities']) == set(v['classes'])
    assert abs(sum(p['probabilities'].values()) - 1) < 1e-3
    batch = httpx.post(u + '/predict', json={'rows': [r1, list(r1.values())] * 32}, timeout=10).json()
    assert len(batch['predictions']) == 64 and batch['request_id'] != one['request_id']
    assert batch['predictions'][0] == batch['predictions'][1] == p      # an object row and a list row agree
    assert _get(u + '/openapi.json').json()['paths'].keys() >= {'/predict', '/healthz', '/readyz', '/version'}

def test_bad_requests(server):
    import httpx
    u, r1 = server['url'], row(server['root'])
    secret = 'Mario Rossi 1970-01-01'
    def post(body, ctype='application/json', **kw):
        return httpx.post(u + '/predict', content=body, headers={'content-type': ctype}, timeout=10, **kw)
    cases = {
        'malformed': (post(b'{"px": '), 400, 'malformed JSON'),
        'missing': (post(json.dumps({k: v for k, v in list(r1.items())[1:]})), 400, f'missing column "{list(r1)[0]}"'),
        'extra': (post(json.dumps({**r1, 'name': secret})), 400, 'unknown column "name"'),
        'mistyped': (post(json.dumps({**r1, list(r1)[5]: secret})), 400, f'row.{list(r1)[5]}: expected a number'),
        'nan': (post(json.dumps({**r1, list(r1)[2]: float('nan')})), 400, f'row.{list(r1)[2]}: not a finite number'),
        'inf': (post(json.dumps({'rows': [r1, {**r1, list(r1)[3]: float('inf')}]})), 400,
                f'rows[1].{list(r1)[3]}: not a finite'),
        'width': (post(json.dumps({'rows': [list(r1.values())[:-1]]})), 400, 'rows[0]: expected 64 values, got 63'),
        'ctype': (post(json.dumps(r1), 'text/csv'), 415, 'content type must be application/json'),
        'big': (post(b'[' + b'1,' * (1 << 20) + b'1]'), 413, 'over the limit of 1048576 bytes'),
    }
    for name, (r, status, text) in cases.items():
        assert r.status_code == status and text in r.json()['error'], (name, r.status_code, r.text)
        assert secret not in r.text and 'nan' not in r.text.lower().replace('nan and', ''), (name, r.text)
    # a chunked body (no content-length) over the limit is cut off as well
    def chunks():
        yield b'{"rows": ['
        for _ in range(4096): yield (b'[' + b'0,' * 63 + b'0],') * 8   # 4 MiB in all
    r = httpx.post(u + '/predict', content=chunks(), headers={'content-type': 'application/json'}, timeout=30)
    assert r.status_code == 413, r.text
    r = _get(u + '/nothing/here'); assert r.status_code == 404 and 'no such endpoint' in r.json()['error']

def test_busy_gets_503_with_retry_after(server):
    import httpx
    u, r1 = server['url'], row(server['root'])
    body = json.dumps({'rows': [[0] * len(r1)] * 4000})   # ~0.77 MB: under the body limit
    out = []
    def hit():
        with httpx.Client(timeout=60) as c:
            for _ in range(3):
                r = c.post(u + '/predict', content=body, headers={'content-type': 'application/json'})
                out.append((r.status_code, r.headers.get('retry-after')))
    ts = [threading.Thread(target=hit) for _ in range(16)]
    for t in ts: t.start()
    for t in ts: t.join(120)
    codes = {c for c, _ in out}
    assert codes <= {200, 503} and 503 in codes and 200 in codes, out
    assert all(ra == '1' for c, ra in out if c == 503)
    assert _get(u + '/healthz').status_code == 200      # still up

def test_refusals_are_one_line(server):
    root, env = server['root'], server['env']
    r = sh(MLWB + ['serve'], root, check=False, env=env, timeout=120)   # the running server holds the port
    assert r.returncode == 1 and r.stderr.strip() == (
        f"mlwb: error: port {server['port']} on 127.0.0.1 is taken: stop what uses it, "
        "or choose another with MLWB_SERVE_PORT or serve.port in params.yaml"), r.stderr
    r = sh(MLWB + ['serve', '--port', str(free_port())], root, check=False, env=env, timeout=120)   # one per project
    assert r.returncode == 1 and r.stderr.strip() == (
        f"mlwb: error: a server already runs for this project on {server['url']} (pid {server['proc'].pid}): "
        "stop it first (`mlwb serve --stop`)"), r.stderr
    r = sh(MLWB + ['serve'], root, check=False, env={**env, 'MLWB_MODEL_NAME': 'nobody'}, timeout=120)
    assert r.returncode == 1 and r.stderr.strip() == (
        "mlwb: error: nobody has no champion to serve (run the pipeline: `mlwb run`, or `mlwb promote`)"), r.stderr
    empty = root.parent/'empty'; empty.mkdir(exist_ok=True); (empty/'params.yaml').write_text('')
    r = sh(MLWB + ['serve'], empty, check=False, env=env, timeout=120)
    assert r.returncode == 1 and r.stderr.strip() == (
        f"mlwb: error: {empty/'mlflow.db'}: no MLflow store here (run the pipeline first: `mlwb run`)"), r.stderr
    assert not (empty/'mlflow.db').exists()

CLIENT = r'''
import json, os, sys, time, httpx
url, body, stop, out = sys.argv[1], sys.argv[2].encode(), sys.argv[3], sys.argv[4]
res = []
with httpx.Client(timeout=30) as c:
    while not os.path.exists(stop):
        t0 = time.time()
        try:
            r = c.post(url + '/predict', content=body, headers={'content-type': 'application/json'})
            v = r.json().get('model_version') if r.status_code == 200 else r.text[:200]
            res.append((t0, time.time(), r.status_code, v))
        except Exception as e: res.append((t0, time.time(), -1, repr(e)[:200]))
json.dump(res, open(out, 'w'))
'''

MOVES = r'''
import json, sys, time, httpx
from datetime import datetime
from mlops_workbench.registry import promote, rollback, aliases
url, out = sys.argv[1], []
aliases()   # imports and opens the store before the first timed move
plan = [('promote', 2), ('promote', 3), ('rollback', None), ('rollback', 1), ('promote', 3), ('rollback', None)]
want = [2, 3, 2, 1, 3, 1]
for (what, v), target in zip(plan, want):
    t0 = time.time()
    recs = promote(v, 'swap test') if what == 'promote' else rollback('swap test', to=v)
    t1 = time.time()
    moved = datetime.fromisoformat(next(r for r in recs if r['alias'] == 'champion')['when']).timestamp()
    while httpx.get(url + '/version', timeout=10).json()['model_version'] != target:
        if time.time() - t1 > 60: sys.exit(f"v{target} was not served within 60 s of the move")
        time.sleep(0.02)
    out.append(dict(target=target, before=t0, moved=moved, after=t1, served=time.time()))
    time.sleep(0.5)
print(json.dumps(out))
'''

SHADOW_TRAFFIC = r'''
import json, sys, httpx, pandas as pd
url = sys.argv[1]
meta = json.load(open('data/prepared/meta.json')); te = pd.read_parquet('data/prepared/test.parquet').head(120)
ids = []
with httpx.Client(timeout=30) as c:
    for i in range(0, len(te), 20):
        part = te.iloc[i:i + 20]
        r = c.post(url + '/predict', json={'rows': part[meta['features']].to_dict('records')}).json()
        f = c.post(url + '/feedback', json={'request_id': r['request_id'], 'labels': [str(x) for x in part['label']]})
        assert f.status_code == 202 and f.json()['accepted'] == len(part), f.text
        ids.append(r['request_id'])
    bad = c.post(url + '/feedback', json={'request_id': ids[0], 'label': 'Mario Rossi'})
    assert bad.status_code == 400 and 'Mario' not in bad.text, bad.text
print(json.dumps(ids))
'''

def test_shadow_feedback_and_live_gate(server):
    "The challenger (v3, untrained) scores every request in the shadow; labels join later; `mlwb shadow` refuses it."
    root, u, env = server['root'], server['url'], server['env']
    v = _get(u + '/version').json()
    assert v['model_version'] == 1 and v['shadow']['model_version'] == 3
    ids = json.loads(sh([sys.executable, '-c', SHADOW_TRAFFIC, u], root, env=env, timeout=300).stdout.splitlines()[-1])
    t0 = time.monotonic()
    while True:   # the shadow answers and labels reach the log in the writer's next segment
        rep = json.loads(sh(MLWB + ['shadow', '--json'], root, env=env).stdout)
        if rep['labelled'] >= 120: break
        assert time.monotonic() - t0 < 60, rep
        time.sleep(1)
    assert rep['champion'] == 1 and rep['challenger'] == 3 and rep['shadowed'] >= 120
    d = rep['decision']
    assert d['n'] >= 120 and d['champion'] > 0.8 and d['challenger'] < 0.5 and not d['passed'] and d['mcnemar_p'] < 0.01
    assert 0 <= rep['agreement'] < 0.5
    out = sh(MLWB + ['shadow', '--gate'], root, env=env).stdout
    assert 'live gate: FAIL' in out and 'v3 not promoted' in out, out
    assert _get(u + '/version').json()['model_version'] == 1

def test_swap_under_load(server):
    "Several client processes post while the champion moves six times: no failure, no stale answer after a switch."
    root, u, env = server['root'], server['url'], server['env']
    body = json.dumps({'rows': [list(row(root).values())] * 4})
    stop = root/'stop-clients'; stop.unlink(missing_ok=True)
    outs = [root/f'client{i}.json' for i in range(3)]
    clients = [subprocess.Popen([sys.executable, '-c', CLIENT, u, body, str(stop), str(o)], cwd=root, env=env)
               for o in outs]
    try:
        time.sleep(2)
        moves = json.loads(sh([sys.executable, '-c', MOVES, u], root, env=env, timeout=600).stdout.splitlines()[-1])
        time.sleep(1)
    finally:
        stop.touch()
        for c in clients: c.wait(60)
    res = sorted((tuple(x) for o in outs for x in json.loads(o.read_text())), key=lambda x: x[0])
    failed = [x for x in res if x[2] != 200]
    assert not failed and len(res) > 100, (len(res), failed[:5])
    assert all(isinstance(x[3], int) for x in res)
    prev, lags = 1, []
    for k, m in enumerate(moves):
        new, end = m['target'], moves[k + 1]['before'] if k + 1 < len(moves) else float('inf')
        firsts = [x[1] for x in res if x[3] == new and x[0] >= m['before']]
        assert firsts, f"no answer from v{new} after move {k}"
        switched = min(firsts)
        lags.append(switched - m['moved'])   # from the alias move (its audit record) to the first answer by the new
        stale = [x for x in res if x[3] == prev and switched < x[0] < end]
        assert not stale, f"move {k} (v{prev} -> v{new}): {len(stale)} answers from v{prev} sent after v{new} answered"
        assert not [x for x in res if m['after'] < x[0] < end and x[3] not in (prev, new)]
        prev = new
    (root/'swap-figures.json').write_text(json.dumps(dict(requests=len(res), failed=len(failed), lag_s=lags)))
    print(f"\nswap under load: {len(res)} requests, {len(failed)} failed, move -> first answer by the new version: "
          f"max {max(lags):.2f} s, mean {sum(lags)/len(lags):.2f} s")
    assert max(lags) < 30

def test_prediction_log_and_served_batch(server):
    "Answered rows reach the prediction log (atomic Parquet segments) with their stamps; they become a monitor batch."
    import httpx, pandas as pd
    root, u, env = server['root'], server['url'], server['env']
    r1 = row(root, 3.0)
    ids = [httpx.post(u + '/predict', json={'rows': [r1, r1]}, timeout=10).json()['request_id'] for _ in range(3)]
    seg_dir, t0 = root/'data'/'predictions', time.monotonic()
    def logged():
        segs = sorted(seg_dir.glob('seg-*.parquet')) if seg_dir.exists() else []
        return pd.concat([pd.read_parquet(p) for p in segs]) if segs else pd.DataFrame(columns=['request_id'])
    while not set(ids) <= set(logged()['request_id']):
        assert time.monotonic() - t0 < 30, "the answered rows did not reach the prediction log within 30 s"
        time.sleep(0.5)
    df = logged(); mine = df[df['request_id'].isin(ids)]
    assert len(mine) == 6 and sorted(mine['row'].unique()) == [0, 1] and (mine[list(r1)] == 3.0).all().all()
    assert set(mine.columns) >= {'time', 'model_version', 'run_id', 'prediction'}
    assert mine['model_version'].notna().all()
    assert not [p for p in seg_dir.iterdir() if p.name.startswith('.')]      # no half-written file left
    out = sh(MLWB + ['served-batch'], root, env=env).stdout
    assert out.startswith('wrote data/batches/b') and out.strip().endswith('-served.parquet'), out
    b = pd.read_parquet(root/out.split()[1])
    assert {f'{i}-0' for i in ids} <= set(b['id']) and list(b.columns) == ['id', *r1]
    assert 'no new rows' in sh(MLWB + ['served-batch'], root, env=env).stdout   # each segment goes into one batch only

def test_predict_file(server):
    "`mlwb predict FILE`: stamped predictions per valid row, invalid rows quarantined (no values), a bad file refused."
    import pandas as pd
    root, env = server['root'], server['env']
    te = pd.read_parquet(root/'data'/'prepared'/'test.parquet').head(40).astype(object)
    feats = list(row(root))
    te.loc[3, feats[1]] = 'Mario Rossi'; te.loc[7, feats[2]] = None
    te.to_csv(root/'in.csv', index=False)
    out = sh(MLWB + ['predict', 'in.csv', '--version', '2'], root, env=env).stdout
    assert out.startswith('v2: 38 of 40 rows predicted') and '2 rejected' in out, out
    p = pd.read_parquet(root/'in.predictions.parquet')
    assert len(p) == 38 and set(p['model_version']) == {2} and p['data_fingerprint'].str.len().eq(64).all()
    assert p['row'].tolist() == [r for r in range(1, 41) if r not in (4, 8)]
    q = (root/'in.predictions.rejected.csv').read_text()
    assert 'in.csv,4,' + feats[1] in q and 'in.csv,8,' + feats[2] in q and 'Mario' not in q
    r = sh(MLWB + ['predict', 'nothere.csv'], root, env=env, check=False)
    assert r.returncode == 1 and r.stderr.strip() == 'mlwb: error: nothere.csv: file not found', r.stderr

def test_edge_channel_over_http(server):
    "The server publishes the edge channel read-only under /edge/: LATEST.json and bundles, nothing else."
    ch = server['root']/'edge'/'channel'   # the project's channel: another test may have published to it already
    (ch/'bundles'/'000001').mkdir(parents=True, exist_ok=True)
    (ch/'LATEST.json').write_text('{"sequence": 1}')
    (ch/'bundles'/'000001'/'model.onnx').write_bytes(b'onnx-bytes')
    (ch/'devices').mkdir(exist_ok=True)
    (ch/'devices'/'dev1.json').write_text('{"device": "dev1"}')
    url = server['url']
    r = _get(f'{url}/edge/LATEST.json')
    assert r.status_code == 200 and r.json() == {'sequence': 1}
    assert _get(f'{url}/edge/bundles/000001/model.onnx').content == b'onnx-bytes'
    for bad in ('%2e%2e/params.yaml', '..%2fparams.yaml', 'bundles/%2e%2e/%2e%2e/%2e%2e/params.yaml', 'devices/dev1.json',
                '%2fetc%2fpasswd', 'LATEST.json%00'):
        r = _get(f'{url}/edge/{bad}')
        assert r.status_code == 404 and 'prepare' not in r.text and 'dev1' not in r.text, (bad, r.status_code, r.text)

def test_stop_stops_what_it_started(server):
    import psutil
    root, env, p = server['root'], server['env'], server['proc']
    procs = psutil.Process(p.pid).children(recursive=True)
    mine = {c.pid for c in procs}
    assert mine, "the server started no child processes?"
    import re   # every socket the server's process tree listens on is on loopback (Ray, Serve's proxy and replica)
    ss = subprocess.run(['ss', '-ltnpH'], capture_output=True, text=True, timeout=30).stdout.splitlines()
    listening = [l.split()[3] for l in ss if {int(x) for x in re.findall(r'pid=(\d+)', l)} & (mine | {p.pid})]
    assert f"127.0.0.1:{server['port']}" in listening, listening
    assert all(a.startswith(('127.0.0.1:', '[::ffff:127.0.0.1]:', '[::1]:')) for a in listening), listening
    r = sh(MLWB + ['serve', '--stop'], root, env=env, timeout=200)
    assert r.stdout.startswith(f"stopped the server on {server['url']} (pid {p.pid})"), r.stdout
    assert p.wait(60) == 0
    time.sleep(1)
    alive = [q.pid for q in still_running(procs)]   # these processes: not later ones that got their pids
    assert not alive, f"left running: {alive}"
    assert not (root/'.mlwb'/'serve.json').exists()
    assert 'no server running' in sh(MLWB + ['serve', '--stop'], root, env=env).stdout
    with socket.socket() as s: s.bind(('127.0.0.1', server['port']))   # the port is free again
