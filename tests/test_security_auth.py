"""Access control: `mlwb tracking-server --auth` (MLflow basic auth on 127.0.0.1, generated admin password), users by a
command, READ vs MANAGE: a reader's `mlwb promote` is a one-line 403 and moves no alias; no login is a one-line 401."""
import os, signal, subprocess, time, urllib.request, urllib.error
from pathlib import Path
import pytest
from conftest import copy_repo, sh, py, clean_env
from testkit import free_port

pytestmark = pytest.mark.slow   # a pipeline run, an MLflow server or registered models: not in `make test-fast`

SETUP = """
from mlops_workbench.config import load_config
from mlops_workbench.tracking import ensure_store, get_client
from mlops_workbench.registry import move_alias
cfg = load_config(); ensure_store(cfg); c = get_client(cfg)
c.create_registered_model(cfg.model_name)
for v in (1, 2):
    d = cfg.root/'models'/f'v{v}'; d.mkdir(parents=True); (d/'MLmodel').write_text(f'v{v}')
    c.create_model_version(cfg.model_name, source=str(d))
move_alias('champion', 1, 'first version', cfg=cfg); move_alias('challenger', 2, 'new', cfg=cfg)
"""

@pytest.fixture(scope='module')
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp('auth'); root = copy_repo(base/'repo'); authd = base/'authdir'
    py(SETUP, root)
    port = free_port(); env = clean_env(MLWB_AUTH_DIR=str(authd))
    p = subprocess.Popen(['mlwb', 'tracking-server', '--auth', '--port', str(port)], cwd=root, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    url = f'http://127.0.0.1:{port}'
    t0 = time.monotonic()
    while True:
        try:
            urllib.request.urlopen(url + '/health', timeout=2); break
        except (urllib.error.URLError, ConnectionError, OSError):
            if p.poll() is not None or time.monotonic() - t0 > 240:
                if p.poll() is None: os.killpg(p.pid, signal.SIGKILL)
                pytest.fail(f"auth server not up after 240 s:\n{p.stdout.read()[-3000:]}")
            time.sleep(1)
    yield dict(root=root, url=url, authd=authd, admin=(authd/'admin.password').read_text().strip(), port=port)
    os.killpg(p.pid, signal.SIGTERM)
    try: p.wait(30)
    except subprocess.TimeoutExpired: os.killpg(p.pid, signal.SIGKILL)

def as_user(s, user=None, pw=None) -> dict:
    extra = dict(MLFLOW_TRACKING_URI=s['url'], MLWB_AUTH_DIR=str(s['authd']))
    if user: extra |= dict(MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=pw)
    return clean_env(**extra)

def test_admin_password_generated_outside_the_repo(server):
    pw = server['authd']/'admin.password'
    assert len(server['admin']) >= 24 and server['admin'] != 'password1234'
    assert oct(pw.stat().st_mode & 0o777) == '0o600' and not str(pw).startswith(str(server['root']))
    import psutil
    listening = [c.laddr for c in psutil.net_connections('tcp') if c.status == 'LISTEN' and c.laddr.port == server['port']]
    assert listening and all(a.ip == '127.0.0.1' for a in listening), listening

def test_unauthenticated_is_401(server):
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(server['url'] + '/api/2.0/mlflow/registered-models/get?name=digits-classifier', timeout=10)
    assert e.value.code == 401
    r = sh(['mlwb', 'history'], server['root'], check=False, env=as_user(server))
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1 and '401 not authenticated' in r.stderr, r.stderr

def test_reader_reads_but_cannot_promote(server):
    admin = as_user(server, 'admin', server['admin'])
    sh(['mlwb', 'tracking-user', 'rita'], server['root'], env=admin)
    sh(['mlwb', 'tracking-user', 'max', '--manage'], server['root'], env=admin)
    rita = (server['authd']/'user-rita.password').read_text().strip()
    reader = as_user(server, 'rita', rita)
    assert "'champion': 1" in sh(['mlwb', 'history'], server['root'], env=reader).stdout   # reading works
    log = server['root']/'registry'/'audit.jsonl'; before = log.read_text()
    r = sh(['mlwb', 'promote', '2', '--reason', 'reader tries'], server['root'], check=False, env=reader)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1 and '403 permission denied' in r.stderr, r.stderr
    assert "'champion': 1" in sh(['mlwb', 'history'], server['root'], env=admin).stdout   # no alias moved
    assert log.read_text() == before                                                      # nothing audited
    mx = as_user(server, 'max', (server['authd']/'user-max.password').read_text().strip())
    r = sh(['mlwb', 'promote', '2', '--reason', 'manager promotes'], server['root'], check=False, env=mx)
    assert r.returncode == 0, r.stderr
    assert "'champion': 2" in sh(['mlwb', 'history'], server['root'], env=reader).stdout

def _get(s, path, host=None):
    "GET `path` as admin (basic auth); (status, body)."
    import base64
    req = urllib.request.Request(s['url'] + path)
    req.add_header('Authorization', 'Basic ' + base64.b64encode(f"admin:{s['admin']}".encode()).decode())
    if host: req.add_header('Host', host)
    try:
        with urllib.request.urlopen(req, timeout=30) as r: return r.status, r.read().decode(errors='replace')
    except urllib.error.HTTPError as e: return e.code, e.read().decode(errors='replace')

def test_artifact_path_traversal_and_foreign_host_refused(server):
    "The artifact endpoint serves a version's own file, and nothing outside the store for `..`, encoded, NUL, absolute or file:// paths."
    from urllib.parse import quote
    secret = server['root']/'outside.txt'; secret.write_text('TRAVERSAL-SENTINEL-31337')
    base = '/model-versions/get-artifact?name=digits-classifier&version=1&path='
    status, body = _get(server, base + 'MLmodel')
    assert status == 200 and body == 'v1', (status, body[:200])
    for p in ('../../outside.txt', quote('../../outside.txt', safe=''), '..%2f..%2foutside.txt', quote('..%2f..%2foutside.txt', safe=''),
              'MLmodel%00../../outside.txt', quote(str(secret), safe=''), quote(secret.as_uri(), safe=''), '%2e%2e/%2e%2e/outside.txt'):
        status, body = _get(server, base + p)
        assert status >= 400 and 'TRAVERSAL-SENTINEL' not in body, (p, status, body[:200])
    status, body = _get(server, '/api/2.0/mlflow/registered-models/get?name=digits-classifier', host='evil.example')
    assert status in (400, 403) and 'digits-classifier' not in body, (status, body[:200])
