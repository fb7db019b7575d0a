"""`make lab` (issue 14.1): JupyterLab from the project's environment on 127.0.0.1 with a token, the project kernel by
default, opened in nbs/. Started as `make lab` starts it (tools/lab.py) in a scratch copy of the repo, on a free port,
asked through its REST API, a notebook opened in headless Chromium (screenshot: test-artifacts/views/jupyterlab.png),
stopped with its whole process group."""
import json, os, secrets, signal, subprocess, sys, time, urllib.error, urllib.request
import psutil, pytest
from conftest import REPO, clean_env, chrome
from testkit import free_port, still_running

ARTIFACTS = REPO/'test-artifacts'/'views'

KERNEL = 'mlops-workbench'
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # loopback, whatever http_proxy says




def api(base: str, path: str, token: str | None, method: str = 'GET', body: dict | None = None):
    "(status, JSON) of a Jupyter REST call, the token in the Authorization header."
    headers = {'Content-Type': 'application/json', **({'Authorization': f'token {token}'} if token else {})}
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, method=method, data=data, headers=headers)
    try:
        with NO_PROXY.open(req, timeout=30) as r: return r.status, json.loads(r.read() or b'null')
    except urllib.error.HTTPError as e: return e.code, None
    except (urllib.error.URLError, ConnectionError): return 0, None   # not listening (yet)


@pytest.fixture
def lab(scratch, tmp_path):
    "JupyterLab started as `make lab` starts it: (base url, token, process, root); stopped with its process group."
    port, token = free_port(), secrets.token_hex(16)
    jdir = tmp_path/'jupyter'   # this test's own Jupyter config, runtime and data (no user settings, nothing left in ~)
    env = clean_env(JUPYTER_TOKEN=token, JUPYTER_CONFIG_DIR=str(jdir/'config'), JUPYTER_RUNTIME_DIR=str(jdir/'runtime'),
                    JUPYTERLAB_WORKSPACES_DIR=str(jdir/'workspaces'))
    log = open(tmp_path/'lab.log', 'w')
    proc = subprocess.Popen([sys.executable, 'tools/lab.py', '--port', str(port), '--no-browser'], cwd=scratch, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f'http://127.0.0.1:{port}'
    try:
        t0 = time.monotonic()
        while api(base, '/api/status', token)[0] != 200:
            tail = lambda: (tmp_path/'lab.log').read_text()[-3000:]
            if proc.poll() is not None: pytest.fail(f"jupyter lab exited {proc.returncode}:\n{tail()}")
            if time.monotonic() - t0 > 180: pytest.fail(f"jupyter lab not answering after 180 s:\n{tail()}")
            time.sleep(1)
        yield base, token, proc, scratch
    finally:
        group = []
        if proc.poll() is None:
            top = psutil.Process(proc.pid)
            group = [top, *top.children(recursive=True)]
        try: os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError: pass
        try: proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL); proc.wait(10)
        log.close()
        time.sleep(1)
        left = still_running(group)   # these processes: not later ones that got their pids
        for p in left: p.kill()
        assert not left, f"processes of jupyter lab still running after SIGTERM: {[p.pid for p in left]}"


def test_lab_serves_the_project_kernel_on_loopback_with_a_token(lab):
    base, token, proc, root = lab
    status, specs = api(base, '/api/kernelspecs', token)
    assert status == 200 and KERNEL in specs['kernelspecs'], specs
    assert specs['default'] == KERNEL
    assert specs['kernelspecs'][KERNEL]['spec']['display_name'] == 'Python (mlops-workbench)'
    assert api(base, '/api/kernelspecs', None)[0] in (401, 403)          # no token, no API
    assert api(base, '/api/kernelspecs', 'wrong')[0] in (401, 403)
    assert token not in ' '.join(psutil.Process(proc.pid).cmdline())   # the token travels in the environment only
    # listening on loopback only (the server and nothing else of its group on another address)
    addrs = set()
    for p in [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]:
        try: addrs |= {c.laddr.ip for c in p.net_connections('inet') if c.status == psutil.CONN_LISTEN}
        except (psutil.NoSuchProcess, FileNotFoundError): pass   # a short-lived child ended while we looked
    assert addrs and addrs <= {'127.0.0.1'}, addrs
    # the file browser opens in nbs/
    status, listing = api(base, '/api/contents/nbs', token)
    assert status == 200 and 'index.ipynb' in {c['name'] for c in listing['content']}
    # a notebook opened without naming a kernel gets the project kernel, running this environment's Python
    new = dict(path='nbs/scratch.ipynb', type='notebook', name='scratch.ipynb')
    status, sess = api(base, '/api/sessions', token, 'POST', new)
    assert status == 201 and sess['kernel']['name'] == KERNEL, sess
    assert api(base, f"/api/sessions/{sess['id']}", token, 'DELETE')[0] == 204


LAB_STATE_JS = """const q = s => document.querySelector(s);
const indicator = q('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator');
return {cells: document.querySelectorAll('.jp-NotebookPanel .jp-Cell').length,
  kernel: (q('.jp-NotebookPanel .jp-KernelName') || q('.jp-NotebookPanel [data-jp-item-name="kernelName"]') || {})
          .textContent || '',
  status: indicator ? indicator.getAttribute('data-status') : '',
  files: Array.from(document.querySelectorAll('.jp-DirListing-itemName')).map(e => e.textContent.trim()),
  text: document.body.innerText}"""


def test_lab_opens_a_notebook_in_the_browser(lab):
    base, token, proc, root = lab
    d = chrome()
    try:
        d.get(f'{base}/lab/tree/nbs/00_config.ipynb?token={token}')
        t0, state = time.monotonic(), {}
        while time.monotonic() - t0 < 180:   # Lab builds its UI, opens the notebook, starts its kernel
            state = d.execute_script(LAB_STATE_JS)
            if state['cells'] and 'mlops-workbench' in state['kernel'] and state['status'] == 'idle': break
            time.sleep(1)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        d.save_screenshot(str(ARTIFACTS/'jupyterlab.png'))
    finally: d.quit()
    assert state['cells'] > 5, state
    assert 'mlops-workbench' in state['kernel'], state
    assert state['status'] == 'idle', state   # the kernel started and answered
    assert '00_config.ipynb' in state['files'] and 'stages' in state['files'], state   # the file browser is in nbs/
    assert 'Jupyter news' not in state['text']   # no prompt to fetch news from the internet
    status, sessions = api(base, '/api/sessions', token)
    assert [s['kernel']['name'] for s in sessions if s['path'].endswith('00_config.ipynb')] == [KERNEL]


def test_a_notebook_saved_from_lab_stays_nbdev_clean(lab):
    "Lab adds kernel metadata and execution counts; the save hook runs nbdev_clean, so git sees no change."
    base, token, proc, root = lab
    status, model = api(base, '/api/contents/nbs/00_config.ipynb?content=1', token)
    assert status == 200
    nb = model['content']
    nb['metadata']['language_info'] = {'name': 'python', 'version': '3.11.7'}
    code = [c for c in nb['cells'] if c['cell_type'] == 'code']
    code[0]['execution_count'] = 7
    code[0]['metadata']['execution'] = {'iopub.status.busy': '2026-11-22T00:00:00Z'}
    saved = dict(type='notebook', format='json', content=nb)
    status, _ = api(base, '/api/contents/nbs/00_config.ipynb', token, 'PUT', saved)
    assert status == 200
    diff = subprocess.run(['git', 'diff', '--stat', '--', 'nbs/00_config.ipynb'], cwd=root, capture_output=True,
                          text=True)
    assert diff.stdout == '', diff.stdout
