"""The Milvus token (issue 12.4) through the real embed stage: the pipeline project's vectors served by
`mlwb milvus-server` with MILVUS_TOKEN, `mlwb stage embed` writing to it with the token from the environment, then
`mlwb scan` (which searches every artifact for the values of *TOKEN* variables, milvus.db included) finds nothing."""
import json, os, signal, socket, subprocess, time
import pytest
from conftest import clean_env, sh
from testkit import free_port

TOKEN = 'milvus-token-sentinel-e6d07a'

def test_embed_through_a_token_server_leaks_no_token(project_copy):
    root, port = project_copy, free_port()
    log = root.parent/'milvus.log'
    srv = subprocess.Popen(['mlwb', 'milvus-server', '--port', str(port)], cwd=root, env=clean_env(MILVUS_TOKEN=TOKEN),
                           stdout=open(log, 'w'), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 120:
            with socket.socket() as s:
                if s.connect_ex(('127.0.0.1', port)) == 0: break
            if srv.poll() is not None: break
            time.sleep(0.3)
        else: pytest.fail(f"milvus-server did not listen in 120 s:\n{log.read_text()[-2000:]}")
        env = clean_env(MILVUS_URI=f'http://127.0.0.1:{port}', MILVUS_TOKEN=TOKEN)
        r = sh(['mlwb', 'stage', 'embed'], root, env=env, check=False, timeout=900)
        assert r.returncode == 0, r.stderr[-3000:]
        assert TOKEN not in r.stdout + r.stderr
        r = sh(['mlwb', 'search', '--id', '1', '--json'], root, env=env)
        assert len(json.loads(r.stdout)) == 5
    finally:
        os.killpg(srv.pid, signal.SIGTERM); srv.wait(120)   # mlwb kills its server 90 s after SIGTERM at most
    # it stops when asked (a signal to the group and one from `mlwb`: the server's handler once deadlocked on the second)
    assert srv.returncode == 0 and 'did not stop' not in log.read_text(), log.read_text()[-2000:]
    assert TOKEN not in log.read_text()
    r = sh(['mlwb', 'scan', '--json'], root, env=clean_env(MILVUS_TOKEN=TOKEN), check=False)
    rep = json.loads(r.stdout)
    assert r.returncode == 0 and rep['hits'] == [] and rep['values'] == 1 and rep['areas'].get('milvus.db'), rep
