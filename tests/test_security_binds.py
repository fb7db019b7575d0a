"""Every server the workbench starts listens on loopback only (issue 12.4), and its HTTP endpoints refuse traversal and
bad requests (12.8): `mlwb milvus-server` (with MILVUS_TOKEN), `mlwb ui`, `mlwb tracking-server --auth`, `mlwb serve`
(Ray Serve on the private Ray runtime, with MLWB_SERVE_TOKEN) and JupyterLab (`make lab` = tools/lab.py) run together
on a copy of the pipeline project while `ss -ltnpH` is sampled for their process trees; then they are stopped and
nothing of theirs may be left. Binding elsewhere takes an explicit option (`--host`)."""
import contextlib, json, os, re, shutil, signal, socket, subprocess, sys, time
from pathlib import Path
import psutil
import pytest
from conftest import clean_env, py, set_params, sh
import testkit
from testkit import Sampler, free_port, process_tree, ss_listening, still_running

pytestmark = pytest.mark.slow   # five servers on the pipeline project

MLWB = [sys.executable, '-c', 'import sys; from mlops_workbench.cli import main; sys.exit(main())']
SERVE_TOKEN, MILVUS_TOKEN = 'serve-token-sentinel-7e1d', 'milvus-token-sentinel-4b2a'
SECRET = 'TRAVERSAL-SENTINEL-8841'
KEY = 'q3Jx7m1Qk9m0c2V8dGhpcy1pcy1hLXRlc3Qta2V5ISE='   # a test key (32 bytes, base64): never a real one

def ours(pids:set, marker:str) -> bool:
    "Whether a listening socket's owners include a process of this test's servers (their children inherit MLWB_AUTH_DIR)."
    if not pids: return True   # an owner that `ss` cannot name counts as ours
    for pid in pids:
        try:
            if psutil.Process(pid).environ().get('MLWB_AUTH_DIR') == marker: return True
        except psutil.Error: continue
    return False

def wait_port(port, proc, log, what, timeout=300):
    "Wait (bounded) until something accepts on 127.0.0.1:`port`; fail with the server's output otherwise."
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        with socket.socket() as s:
            if s.connect_ex(('127.0.0.1', port)) == 0: return
        if proc.poll() is not None: break
        time.sleep(0.5)
    pytest.fail(f"{what} did not listen on {port} in {timeout} s (exit {proc.poll()}):\n{Path(log).read_text()[-3000:]}")

def raw(port, method, path, headers=None, body=b'') -> tuple:
    "One raw HTTP/1.1 request, the path sent exactly as given (no client normalizes `..`); (status, body text)."
    head = {'Host': f'127.0.0.1:{port}', 'Connection': 'close', 'Content-Length': str(len(body)), **(headers or {})}
    req = f"{method} {path} HTTP/1.1\r\n" + ''.join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n"
    with socket.create_connection(('127.0.0.1', port), timeout=30) as s:
        s.sendall(req.encode('latin-1') + body)
        data = b''
        while chunk := s.recv(65536): data += chunk
    status = int(data.split(b' ', 2)[1]) if data.startswith(b'HTTP/') else 0
    return status, data.decode('latin-1')

CHAMPION = r'''
from mlops_workbench.registry import aliases
from mlops_workbench.config import load_config
print(aliases(load_config()).get('champion'))
'''

@pytest.fixture(scope='module')
def servers(project, tmp_path_factory):
    "All the servers on a copy of the pipeline project, sampled from their start; stopped (bounded) at the end."
    base = tmp_path_factory.mktemp('binds')
    root = Path(shutil.copytree(project, base/'p', symlinks=True, ignore=shutil.ignore_patterns('milvus.db*', '.mlwb')))
    set_params(root, serve={'max_ongoing_requests': 4, 'poll_s': 2.0, 'encrypt_log': True})
    assert py(CHAMPION, root).stdout.split()[-1] != 'None'   # a champion to serve
    (root/'outside.txt').write_text(SECRET)
    ports = dict(milvus=free_port(), ui=free_port(), auth=free_port(), serve=free_port(), lab=free_port())
    env = clean_env(PYTHONPATH=str(root), MILVUS_TOKEN=MILVUS_TOKEN, MLWB_KEY=KEY, MLWB_SERVE_TOKEN=SERVE_TOKEN,
                    MLWB_SERVE_PORT=str(ports['serve']), MLWB_AUTH_DIR=str(base/'auth'),
                    JUPYTER_TOKEN='lab-token-sentinel-0c9f', JUPYTER_CONFIG_DIR=str(base/'jupyter'))
    cmds = dict(milvus=MLWB + ['milvus-server', '--port', str(ports['milvus'])],
                ui=MLWB + ['ui', '--port', str(ports['ui'])],
                auth=MLWB + ['tracking-server', '--auth', '--port', str(ports['auth'])],
                serve=MLWB + ['serve'],
                lab=[sys.executable, 'tools/lab.py', '--port', str(ports['lab'])])
    procs, logs, roots = {}, {}, []
    sampler = Sampler(lambda: roots, every=0.5)   # the servers' process trees, `ss -ltnpH` every 0.5 s
    sampler.start()
    try:
        for name, cmd in cmds.items():
            logs[name] = base/f'{name}.log'
            procs[name] = subprocess.Popen(cmd, cwd=root, env=env, stdout=open(logs[name], 'w'), stderr=subprocess.STDOUT,
                                           start_new_session=True)
            roots.append(procs[name].pid)
        for name, p in procs.items(): wait_port(ports[name], p, logs[name], name)
        t0 = time.monotonic()   # mlwb serve listens before its app is deployed: wait for its "serving" line
        while 'serving ' not in logs['serve'].read_text() and time.monotonic() - t0 < 300 and procs['serve'].poll() is None:
            time.sleep(0.5)
        assert 'serving ' in logs['serve'].read_text(), logs['serve'].read_text()[-3000:]
        yield dict(root=root, ports=ports, procs=procs, logs=logs, sampler=sampler, env=env)
    finally:
        for p in procs.values():
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError): os.killpg(p.pid, signal.SIGTERM)
        for p in procs.values():
            try: p.wait(120)
            except subprocess.TimeoutExpired: os.killpg(p.pid, signal.SIGKILL); p.wait(30)
        sampler.stop.set(); sampler.join(10)

def test_every_server_listens_on_loopback_only(servers):
    time.sleep(5)   # a few more samples with everything up (the serve replicas, Lab's kernels are not started)
    s = servers['sampler']
    missing = set(servers['ports'].values()) - s.ports()
    assert not missing, (missing, sorted(s.seen))          # the sampler saw every server's own port
    assert not s.exposed(), s.exposed()                    # and nothing of any of them beyond loopback
    assert any(n.startswith(('gcs_server', 'raylet')) for n, _, _ in s.seen), sorted(s.seen)   # Ray was sampled

def test_serve_asks_for_its_bearer_token(servers):
    port, ok = servers['ports']['serve'], {'Authorization': f'Bearer {SERVE_TOKEN}'}
    assert raw(port, 'GET', '/healthz')[0] == 200                     # the liveness probe stays open
    for path in ('/version', '/readyz', '/docs', '/openapi.json', '/edge/LATEST.json'):
        for h in ({}, {'Authorization': 'Bearer wrong'}, {'Authorization': f'Basic {SERVE_TOKEN}'}):
            status, body = raw(port, 'GET', path, h)
            assert status == 401 and 'bearer token' in body and SERVE_TOKEN not in body, (path, h, status, body[-300:])
    status, body = raw(port, 'POST', '/predict', {'Content-Type': 'application/json'}, b'{"rows": []}')
    assert status == 401, (status, body[-300:])
    status, body = raw(port, 'GET', '/version', ok)
    assert status == 200 and '"alias": "champion"' in body.replace('":"', '": "'), body[-300:]
    feats = json.loads((servers['root']/'data'/'prepared'/'meta.json').read_text())['features']
    status, body = raw(port, 'POST', '/predict', {**ok, 'Content-Type': 'application/json'},
                       json.dumps({f: 1.0 for f in feats}).encode())
    assert status == 200 and '"predictions"' in body, body[-300:]
    assert SERVE_TOKEN not in servers['logs']['serve'].read_text()

def test_edge_devices_send_the_token(servers, monkeypatch):
    "An edge device polling the server's channel (`edge.fetch`) gets through with MLWB_SERVE_TOKEN, and 401 without."
    import urllib.error
    from mlops_workbench.edge import fetch
    ch = servers['root']/'edge'/'channel'; ch.mkdir(parents=True, exist_ok=True)
    (ch/'LATEST.json').write_text('{"version": 0}')
    url = f"http://127.0.0.1:{servers['ports']['serve']}/edge"
    monkeypatch.delenv('MLWB_SERVE_TOKEN', raising=False)
    with pytest.raises(urllib.error.HTTPError) as e: fetch(url, 'LATEST.json')
    assert e.value.code == 401
    monkeypatch.setenv('MLWB_SERVE_TOKEN', SERVE_TOKEN)
    assert fetch(url, 'LATEST.json') == b'{"version": 0}'

TRAVERSAL = ('/../outside.txt', '/%2e%2e/outside.txt', '/..%2foutside.txt', '/%2e%2e%2foutside.txt',
             '/version/../../outside.txt', '/version/..%2f..%2foutside.txt', '/docs/%2e%2e/%2e%2e/outside.txt',
             '/openapi.json/..%2f..%2f..%2fetc%2fpasswd', '/predict%00', '/version%00.json', '//etc/passwd',
             '/%2fetc%2fpasswd', '/file:///etc/passwd', '/file%3a%2f%2f%2fetc%2fpasswd', '/edge/..%2f..%2fparams.yaml',
             '/edge/%2e%2e/outside.txt', '/edge/bundles/%2e%2e/%2e%2e/%2e%2e/outside.txt')

def _no_leak(status, body, what, port=None):
    "Refused (4xx/5xx) without the secret; with `port`, a redirect is followed once and must end refused too."
    if port and status in (301, 302, 307, 308):
        loc = re.search(r'(?im)^location: *(\S+)', body).group(1)
        status, body = raw(port, 'GET', re.sub(r'^https?://[^/]+', '', loc))
    assert status >= 400 and SECRET not in body and 'root:x:0:0' not in body, (what, status, body[-300:])

def test_serve_refuses_traversal_and_bad_requests(servers):
    port, ok = servers['ports']['serve'], {'Authorization': f'Bearer {SERVE_TOKEN}'}
    for path in TRAVERSAL:
        for h in ({}, ok):
            _no_leak(*raw(port, 'GET', path, h), (path, bool(h)))
    json_h = {**ok, 'Content-Type': 'application/json'}
    for body in (b'{"rows": "../outside.txt"}', b'{"rows": [{"../outside.txt": 1}]}', b'\x00', b'{"request_id": "../x"}',
                 json.dumps({'rows': [str(servers['root']/'outside.txt')]}).encode()):
        for path in ('/predict', '/feedback'):
            _no_leak(*raw(port, 'POST', path, json_h, body), (path, body))
    _no_leak(*raw(port, 'POST', '/predict', {**ok, 'Content-Type': 'text/plain'}, b'{}'), 'content type')

def test_mlflow_artifact_routes_refuse_traversal(servers):
    "The MLflow UI's artifact routes beside /model-versions/get-artifact (tests/test_security_auth.py covers that one)."
    port, secret = servers['ports']['ui'], servers['root']/'outside.txt'
    from urllib.parse import quote
    for p in ('../../../outside.txt', quote('../../../outside.txt', safe=''), '..%2f..%2f..%2foutside.txt',
              'x%00/../../../outside.txt', quote(str(secret), safe=''), quote(secret.as_uri(), safe=''), '/etc/passwd'):
        for route in (f'/get-artifact?run_uuid=0&path={p}', f'/ajax-api/2.0/mlflow/get-artifact?run_id=0&path={p}',
                      f'/api/2.0/mlflow-artifacts/artifacts/{p}', f'/static-files/{p}'):
            _no_leak(*raw(port, 'GET', route), route, port)
    status, _ = raw(port, 'GET', '/api/2.0/mlflow/experiments/search?max_results=1', {'Host': 'evil.example'})
    assert status in (400, 403), status

def test_lab_asks_for_its_token_and_stays_in_its_root(servers):
    "JupyterLab (`make lab`): nothing without its token; with it, nothing outside the project's root."
    port, tok = servers['ports']['lab'], servers['env']['JUPYTER_TOKEN']
    for path in ('/files/outside.txt', '/api/contents/outside.txt', '/api/contents/params.yaml?content=1'):
        status, body = raw(port, 'GET', path)
        assert status in (302, 401, 403) and SECRET not in body and 'prepare:' not in body, (path, status, body[-300:])
    assert raw(port, 'GET', '/api/contents/outside.txt', {'Authorization': f'token {tok}'})[0] == 200   # the token works
    for path in ('/files/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd', '/files/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd',
                 '/api/contents/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd', '/api/contents/%2fetc%2fpasswd',
                 '/files/file:%2f%2f%2fetc%2fpasswd', '/files/outside.txt%00.png'):
        status, body = raw(port, 'GET', path, {'Authorization': f'token {tok}'})
        assert status >= 400 and 'root:x:0:0' not in body, (path, status, body[-300:])

def test_milvus_server_asks_for_its_token(servers):
    env = {**servers['env'], 'MILVUS_URI': f"http://127.0.0.1:{servers['ports']['milvus']}"}
    code = 'from mlops_workbench.vectors import connect\nprint(connect().list_collections())'
    good = py(code, servers['root'], env=env)
    assert good.stdout.strip().endswith('[]') or good.stdout.strip().endswith(']'), good.stdout
    env.pop('MILVUS_TOKEN')
    r = py(code, servers['root'], env=env, check=False)
    assert r.returncode != 0 and r.stderr.strip().splitlines()[-1].endswith('the server refused the token (set MILVUS_TOKEN)')
    assert MILVUS_TOKEN not in servers['logs']['milvus'].read_text()

def test_stopped_servers_leave_nothing(servers):
    procs, s = servers['procs'], servers['sampler']
    for p in procs.values():
        if p.poll() is None: os.killpg(p.pid, signal.SIGTERM)
    for name, p in procs.items():
        try: p.wait(180)
        except subprocess.TimeoutExpired: pytest.fail(f'{name} did not stop in 180 s after SIGTERM')
    # each stopped when asked: none had to be killed by `mlwb` after its 90 s (milvus-server's signal handler once
    # deadlocked on the second SIGTERM: the group's and the one `mlwb` passes on)
    slow = {n: servers['logs'][n].read_text()[-500:] for n in procs if 'did not stop' in servers['logs'][n].read_text()}
    assert not slow and procs['milvus'].returncode == 0, (procs['milvus'].returncode, slow)
    s.stop.set(); s.join(10)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60:
        left = still_running(s.processes.values())   # the processes seen, not later ones that got their pids
        if not left: break
        time.sleep(1)
    assert not left, sorted((p.pid, ' '.join(testkit.cmdline_or_none(p) or [p.name()])[:200]) for p in left)
    # a port of theirs listening still, by a process that carries this test's environment (an orphan the sampler missed);
    # the same port number taken since by an unrelated process (`make test` runs two pytest processes at once, and every
    # kernel they start binds five free ports) is not theirs
    mine = servers['env']['MLWB_AUTH_DIR']
    still = [(ip, port, sorted(pids)) for ip, port, pids in ss_listening() if port in s.ports() and ours(pids, mine)]
    assert not still, still

def test_binding_elsewhere_takes_an_explicit_option(scratch):
    port = free_port()
    log = scratch.parent/'milvus-any.log'
    p = subprocess.Popen(MLWB + ['milvus-server', '--host', '0.0.0.0', '--port', str(port)], cwd=scratch,
                         env=clean_env(PYTHONPATH=str(scratch)), stdout=open(log, 'w'), stderr=subprocess.STDOUT,
                         start_new_session=True)
    try:
        wait_port(port, p, log, 'milvus-server --host 0.0.0.0', 120)
        ips = {ip for ip, prt, pids in ss_listening() if prt == port and pids & {q.pid for q in process_tree([p.pid])}}
        assert ips and ips <= {'0.0.0.0', '*', '::'}, ips   # every interface, as asked ('*': gRPC's dual stack)
    finally:   # mlwb gives the server 90 s after SIGTERM before it kills it: wait past that (CI, loaded: > 60 s once)
        os.killpg(p.pid, signal.SIGTERM); p.wait(120)

def test_the_prediction_log_was_encrypted_at_rest(servers):
    """serve.encrypt_log: the segments the server wrote (the last one at its stop) are ciphertext; read_log decrypts them;
    `mlwb served-batch` makes an encrypted batch of them, which `batches.read_batch` reads with the key only."""
    segs = sorted((servers['root']/'data'/'predictions').glob('seg-*'))
    assert segs and all(p.name.endswith('.parquet.enc') and not p.read_bytes().startswith(b'PAR1') for p in segs), segs
    code = "from mlops_workbench.serve import read_log\nprint(len(read_log('data/predictions')))"
    n = int(py(code, servers['root'], env=servers['env']).stdout.split()[-1])
    assert n >= 1
    # an encrypted log makes an encrypted served batch (made in memory), which reads back with the key only
    root, env = servers['root'], servers['env']
    out = sh(MLWB + ['served-batch'], root, env=env).stdout
    assert out.startswith('wrote data/batches/b') and out.strip().endswith('-served.parquet.enc'), out
    assert not (root/out.split()[1]).read_bytes().startswith(b'PAR1')
    assert not [p.name for p in (root/'data'/'batches').iterdir() if p.name.endswith('.parquet')], "a plaintext batch"
    code = ("from mlops_workbench.batches import read_batch, list_batches\nfrom mlops_workbench.config import load_config, read_json\n"
            "cfg = load_config(); meta = read_json(cfg.path('data', 'prepared', 'meta.json'))\n"
            "df, info = read_batch(list_batches(cfg.path('data', 'batches'))[-1], meta)\nprint(len(df), info['encrypted'])")
    assert py(code, root, env=env).stdout.split()[-2:] == [str(n), 'True']
    r = py(code, root, env={k: v for k, v in env.items() if k != 'MLWB_KEY'}, check=False)
    assert r.returncode != 0 and 'reading the encrypted batch' in r.stderr and 'needs the secret key' in r.stderr, r.stderr[-2000:]
