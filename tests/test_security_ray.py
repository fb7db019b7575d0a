"""Ray token auth (issue 12.4): the private runtime has its own token (a 0600 file in its folder, not the shared
~/.ray/auth_token); a client without that token, or with another one, is refused; with it, it runs a task. A
`RAY_ADDRESS` client always asks for token auth: with no token anywhere it stops with a one-line error."""
import json, os, subprocess, sys
import pytest
from conftest import clean_env

pytestmark = pytest.mark.slow   # a private Ray runtime and three clients

HOLD = """
import json, os, sys
from mlops_workbench.distributed import ray_runtime
with ray_runtime(num_cpus=1) as ray:
    node = ray._private.worker._global_node
    print(json.dumps(dict(gcs=node.gcs_address, token=os.environ['RAY_AUTH_TOKEN_PATH'],
                          mode=os.environ['RAY_AUTH_MODE'])), flush=True)
    sys.stdin.read()   # hold the runtime until stdin closes
print(json.dumps(dict(after=os.environ.get('RAY_AUTH_TOKEN_PATH'))), flush=True)
"""

CLIENT = """
from mlops_workbench.distributed import ray_runtime
with ray_runtime() as ray:
    print('answer', ray.get(ray.remote(lambda: 41 + 1).remote(), timeout=60), flush=True)
"""

def client(tmp_path, gcs, **env):
    "Run CLIENT against `gcs` with only `env`'s RAY_AUTH_* settings (HOME moved: no ~/.ray/auth_token to fall back on)."
    e = clean_env(RAY_ADDRESS=gcs, HOME=str(tmp_path), **env)
    try: return subprocess.run([sys.executable, '-c', CLIENT], cwd=tmp_path, env=e, capture_output=True, text=True,
                               timeout=120)
    except subprocess.TimeoutExpired as t: return subprocess.CompletedProcess(t.cmd, -9, t.stdout or '', t.stderr or '')

def test_private_runtime_has_its_own_token_and_refuses_clients_without_it(tmp_path):
    p = subprocess.Popen([sys.executable, '-c', HOLD], cwd=tmp_path, env=clean_env(), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        info = json.loads(p.stdout.readline())
        token = info['token']
        assert info['mode'] == 'token' and token.startswith('/tmp/mlwb-ray-')
        assert oct(os.stat(token).st_mode & 0o777) == '0o600'
        good = client(tmp_path, info['gcs'], RAY_AUTH_TOKEN_PATH=token)
        assert 'answer 42' in good.stdout, good.stderr[-3000:]
        for bad in (dict(RAY_AUTH_MODE='disabled'), dict(RAY_AUTH_TOKEN='0' * 64)):   # no token; another token
            r = client(tmp_path, info['gcs'], **bad)
            assert 'answer' not in r.stdout and r.returncode != 0, (bad, r.stdout[-2000:])
            assert 'authenticat' in r.stderr.lower(), (bad, r.stderr[-3000:])   # refused for the token, not else
    finally:
        p.stdin.close()
        try: p.wait(timeout=120)
        except subprocess.TimeoutExpired: os.killpg(p.pid, 9)
    assert p.returncode == 0 and not os.path.exists(token)   # the token went with the runtime
    assert json.loads(p.stdout.readline()) == dict(after=None)   # and the environment was restored

def test_a_cluster_client_without_any_token_gets_one_line(tmp_path):
    r = client(tmp_path, '127.0.0.1:1')
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert 'RAY_ADDRESS=127.0.0.1:1: Ray token auth is on but no token was found' in last, r.stderr[-2000:]
