"""Shared fixtures: scratch copies of the repo where the real pipeline runs (papermill kernels, DVC, MLflow, Milvus Lite)."""
import os, shutil, subprocess, sys, time
from pathlib import Path
import pytest, yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO/'tools'))
import testkit, build_docs, cmdpool   # scratch copies of the repo (tracked files, no results), the environment of a user who set nothing
BIN = Path(sys.executable).parent
# small, fast params for the pipeline tests (the shape of the default pipeline, fewer epochs and units)
SMALL = {"train": {"epochs": 3, "hidden": [32], "lr": 0.01},
         "sweep": {"n_trials": 4, "epochs": 3, "hidden": [[32], [64]], "startup_trials": 2, "warmup_epochs": 1}}

def clean_env(**extra) -> dict:
    "The environment of a user who set nothing: embedded backends, this venv first on PATH."
    return testkit.clean_env(**{'PYTHONUNBUFFERED': '1', **extra})

# `sh` forks `python -c`, `python script.py` and `mlwb` commands from this process's command pool (tools/cmdpool.py),
# which has imported torch, MLflow, pandas, ... once; MLWB_CMD_POOL=0 starts every command fresh
CMD_POOL = os.environ.get('MLWB_CMD_POOL') != '0'

def sh(cmd, cwd, check=True, timeout=900, fresh=False, **kw) -> subprocess.CompletedProcess:
    """Run a command (list or shell string) in `cwd`; on failure show its output. `fresh`: in a fresh interpreter (to see
    what it imports, or an import's warnings), where a forked one from the command pool would do otherwise."""
    env = kw.pop('env') if 'env' in kw else clean_env()
    r = None if fresh or kw or not CMD_POOL or isinstance(cmd, str) else cmdpool.run(cmd, cwd, env, timeout, clean_env())
    if r is None:
        r = subprocess.run(cmd, cwd=cwd, shell=isinstance(cmd, str), capture_output=True, text=True, env=env, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd} exited {r.returncode}\n--- stdout\n{r.stdout[-4000:]}\n--- stderr\n{r.stderr[-4000:]}")
    return r

def set_params(root: Path, **sections):
    "Update sections of root/params.yaml (e.g. train={'epochs': 4})."
    p = root/'params.yaml'; params = yaml.safe_load(p.read_text())
    for sec, vals in sections.items(): params.setdefault(sec, {}).update(vals)
    p.write_text(yaml.safe_dump(params, sort_keys=False))

def copy_repo(dest: Path) -> Path:
    "Copy the repo's tracked and unignored files (what a clone has, plus uncommitted work, without a run's results) into a fresh git repo."
    return testkit.copy_repo(dest, REPO)

@pytest.fixture(scope='session')
def project(tutorial_runs) -> Path:
    """A clone of the repo (committed results included) with small params committed, on which the full pipeline has
    run once: the copy where tutorial 01 (nbs/tutorials/01_quickstart.ipynb) ran `mlwb run` (= checks + `dvc repro`)
    and only read the results, so that the session runs the pipeline once for both. Its output is in
    `first_repro.log` beside the copy."""
    nb, root = tutorial_runs('01_quickstart.ipynb')
    if isinstance(nb, Exception): raise nb
    import json
    first = [c for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code'][0]
    (root.parent/'first_repro.log').write_text(''.join(''.join(o.get('text', '')) for o in first['outputs']))
    return root

@pytest.fixture
def project_copy(project, tmp_path) -> Path:
    "A copy of the `project` run (results and stores included) for a test that changes it: `project` stays as the run left it."
    return testkit.copy_run(project, tmp_path/'repo')

TUTORIALS = sorted((REPO/'nbs'/'tutorials').glob('*.ipynb'))
# the tutorials are independent (each in its own repo copy, with its own stores, free ports and private Ray folders, as
# `make docs` runs them): this many run at a time; MLWB_TUTORIAL_WORKERS=1 runs them one after the other
TUTORIAL_WORKERS = int(os.environ.get('MLWB_TUTORIAL_WORKERS', '2'))
TUTORIAL_BOUND = 2400   # seconds one tutorial may take (papermill is stopped after that, with its kernel)
# a folder that several pytest processes share (tools/pytest_shards.py sets it for the processes of one `make test`):
# each tutorial runs once in it, by the first process that asks; unset, each session has a folder of its own
SHARE_ENV = 'MLWB_TUTORIAL_SHARE'

# tutorials whose first cell runs the pipeline (`mlwb run`) as the quickstart (01) does, on the same params: in the
# tests they start from a copy of the quickstart's run, where that cell finds the pipeline up to date, so the session
# runs the pipeline once for all of them (`make docs` runs each from a fresh copy). tests/test_docs.py checks the list
FROM_PIPELINE_RUN = ('04_operate.ipynb', '05_serve.ipynb', '06_edge.ipynb')
# the order the tutorials start in when every one is asked for (after the asked one): longest first, measured in a
# `make test` (s, four test workers on two cores: 05 ~240, 04 ~170, 03 ~155, 02 ~60, 06 ~35), so that the two
# runners end together
TUTORIAL_ORDER = ('01_quickstart.ipynb', '05_serve.ipynb', '03_scale_out.ipynb', '04_operate.ipynb', '02_own_data.ipynb',
                  '06_edge.ipynb')
# tutorials whose processes (the kernel's environment carries a mark that its servers, stages and Ray's nodes and workers
# inherit) have their listening sockets sampled while they run, into `listening.json` beside the executed notebook:
# test_ray_loopback.py checks the scale-out tutorial's 2-node cluster from it instead of starting one of its own
LISTEN_SAMPLED = ('03_scale_out.ipynb',)

def _run_tutorial(share: Path, root: Path, name: str, dest: Path, bound: float) -> Path:
    """Tutorial `name` run as written in a fresh clone of the repo at `root` (small params, committed), or in a copy of
    the quickstart's run (`FROM_PIPELINE_RUN`, the quickstart taken from `share` as every tutorial is): the executed
    notebook."""
    if name in FROM_PIPELINE_RUN:
        quick, quick_root = shared_tutorial(share, '01_quickstart.ipynb', bound)
        if isinstance(quick, Exception): raise RuntimeError(f"tutorial {name} starts from the quickstart's run, which failed: {quick}")
        testkit.copy_run(quick_root, root)
    else:   # as a user's clone: the committed results come too, and the tree is clean (test_package_lineage reads it)
        testkit.copy_repo(root, REPO, skip=())
        set_params(root, **SMALL)
        testkit.commit(root, 'small params', 'params.yaml')
    if name not in LISTEN_SAMPLED: return build_docs.execute_tutorial(root/'nbs'/'tutorials'/name, dest, bound=bound)
    import json, uuid
    mark, cache = uuid.uuid4().hex, {}
    sampler = testkit.Sampler(lambda: testkit.marked_processes(mark, cache), tree=False)   # a mark is inherited
    sampler.start()
    try: return build_docs.execute_tutorial(root/'nbs'/'tutorials'/name, dest, bound=bound, env={testkit.MARK_ENV: mark})
    finally:
        sampler.stop.set()
        sampler.join()
        t0 = time.monotonic()   # what the tutorial left running (stopped processes may take a moment to go)
        while (left := testkit.marked_processes(mark)) and time.monotonic() - t0 < 15: time.sleep(0.5)
        left = [' '.join(c) for c in map(testkit.cmdline_or_none, left) if c is not None]
        (dest.parent/'listening.json').write_text(json.dumps(dict(
            seen=sorted(sampler.seen), procs=sorted(sampler.procs), cmdlines=sorted(sampler.cmdlines), left=left)))

def shared_tutorial(share: Path, name: str, bound: float = TUTORIAL_BOUND, runner=_run_tutorial) -> tuple:
    """Tutorial `name` run once for every process that shares the folder `share`: the first to ask runs it (`runner`),
    the others wait (bounded) for its result; a run whose process died is run again. -> (executed notebook, or the
    error it raised; the repo copy it ran in, which nobody changes: take a `testkit.copy_run` of it to work in)."""
    import fcntl, json
    d = share/Path(name).stem
    d.mkdir(parents=True, exist_ok=True)
    with open(share/f'{d.name}.lock', 'w') as lock:   # an flock: released when its holder ends, however it ends
        t0 = time.monotonic()
        while True:
            try: fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB); break
            except BlockingIOError:
                if time.monotonic() - t0 > bound + 120:
                    raise TimeoutError(f"tutorial {name}: another test process has run it for {bound + 120:.0f} s")
                time.sleep(0.5)
        result, root = d/'result.json', d/'repo'
        if not result.exists():
            if root.exists(): shutil.rmtree(root)   # a run whose process was killed half-way
            try: nb, error = runner(share, root, name, d/name, bound), None
            except RuntimeError as e: nb, error = None, str(e)
            tmp = d/'.result.json'
            tmp.write_text(json.dumps({'notebook': nb and str(nb), 'error': error})); tmp.replace(result)
        r = json.loads(result.read_text())
    return (Path(r['notebook']) if r['notebook'] else RuntimeError(r['error'])), root

@pytest.fixture(scope='session')
def tutorial_runs(tmp_path_factory, request):
    """Each tutorial run once as written, in its own fresh copy of the repo (small params), the first time a test asks
    (once per `make test`: its pytest processes share the runs, `shared_tutorial`): `tutorial_runs(name)` -> (executed
    notebook, or the error it raised; this session's copy of the repo it ran in, results and stores included). The
    docs site shows these runs; tests of the scenario a tutorial walks through read its results instead of running it
    again. When the session runs the docs tests (they ask for every tutorial), the first ask starts all of them,
    TUTORIAL_WORKERS at a time, the asked one first, and waits for all of them."""
    import concurrent.futures as cf
    share = Path(os.environ[SHARE_ENV]) if os.environ.get(SHARE_ENV) else tmp_path_factory.mktemp('tutorials')
    futures, copies = {}, {}
    pool = cf.ThreadPoolExecutor(max_workers=TUTORIAL_WORKERS, thread_name_prefix='tutorial')
    every = any('executed_tutorials' in getattr(i, 'fixturenames', ()) for i in request.session.items)
    def start(name: str):
        if name not in futures: futures[name] = pool.submit(shared_tutorial, share, name)
    def run(name: str) -> tuple:
        start(name)
        if every:
            for nb in sorted(TUTORIALS, key=lambda p: (TUTORIAL_ORDER + (p.name,)).index(p.name)): start(nb.name)
        # with every tutorial started, the asking test waits for all of them: none runs beside a later test (tests that
        # time servers or count processes would share the two cores with a tutorial)
        waited = list(futures) if every else [name]
        cf.wait([futures[n] for n in waited], timeout=TUTORIAL_BOUND + 240)
        if not futures[name].done(): raise TimeoutError(f"tutorial {name} did not finish in {TUTORIAL_BOUND + 240} s")
        nb, root = futures[name].result()
        if name not in copies:   # this session's own copy (the folder is made here: tmp_path_factory is not thread-safe)
            copies[name] = testkit.copy_run(root, tmp_path_factory.mktemp(Path(name).stem)/'repo')
        return nb, copies[name]
    yield run
    pool.shutdown(wait=True, cancel_futures=True)   # a tutorial still running ends within its bound

def tutorial_root(tutorial_runs, name: str) -> Path:
    "The repo copy where tutorial `name` ran; the tutorial's own error when it failed."
    nb, root = tutorial_runs(name)
    if isinstance(nb, Exception): raise nb
    return root

def tutorial_cells(tutorial_runs, name: str) -> list:
    "The executed code cells of tutorial `name`."
    import json
    nb, _ = tutorial_runs(name)
    if isinstance(nb, Exception): raise nb
    return [c for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code']

def tutorial_cell(tutorial_runs, name: str, code: str) -> dict:
    "The executed code cell of tutorial `name` whose source contains `code` (exactly one)."
    found = [c for c in tutorial_cells(tutorial_runs, name) if code in ''.join(c['source'])]
    assert len(found) == 1, (code, len(found))
    return found[0]

def cell_text(cell) -> str:
    "Everything a cell printed or displayed as text."
    return ''.join(''.join(o.get('text', '') or o.get('data', {}).get('text/plain', '')) for o in cell['outputs'])

# ---- tiers: `make test-fast` runs what is not marked slow (no pipeline run, no cluster, no fresh venv) -------------
SLOW_FIXTURES = {'project', 'project_copy', 'scratch', 'tutorial_runs'}

def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: runs a pipeline, a cluster, a fresh venv or a browser (not in `make test-fast`)')
    config.addinivalue_line('markers', 'tutorials: reads a tutorial\'s run other than the pipeline run (`project`): `make '
                            'test` runs these in a pytest process of its own (tools/pytest_shards.py)')
    config.addinivalue_line('markers', 'pipeline_run: reads the session\'s pipeline run (`project`) and no other tutorial: '
                            'a pytest process of its own in `make test`')

def reads_tutorials(item) -> bool:
    "The test asks for `tutorial_runs` itself, or through a fixture other than `project` (the pipeline run)."
    info = getattr(item, '_fixtureinfo', None)
    if info is None: return False
    if 'tutorial_runs' in info.argnames: return True
    return any('tutorial_runs' in d.argnames for name, defs in info.name2fixturedefs.items()
               if name not in ('project', 'tutorial_runs') for d in defs)

@pytest.hookimpl(tryfirst=True)   # before `-m` selects on the marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        names = set(getattr(item, 'fixturenames', ()))
        if SLOW_FIXTURES & names: item.add_marker(pytest.mark.slow)
        if reads_tutorials(item): item.add_marker(pytest.mark.tutorials)
        elif 'tutorial_runs' in names: item.add_marker(pytest.mark.pipeline_run)

# MLWB_TEST_CPU_LOG=FILE: each test's wall time and the machine's busy CPU seconds while it ran (all its processes,
# daemons included) as JSON lines; meaningful with one test at a time (`tools/pytest_shards.py --serial`), summed per
# file by `tools/test_costs.py`
CPU_LOG = os.environ.get('MLWB_TEST_CPU_LOG')

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if not CPU_LOG:
        yield
        return
    import json
    t0, c0 = time.monotonic(), testkit.machine_cpu()
    yield
    with open(CPU_LOG, 'a') as f:
        f.write(json.dumps({'test': item.nodeid, 'wall': round(time.monotonic() - t0, 2),
                            'cpu': round(testkit.machine_cpu() - c0, 2)}) + '\n')

def orphan_pools() -> list:
    "Kernel pool servers and shared Ray runtimes whose owning run has ended."
    import psutil
    from mlops_workbench.kernels import alive
    return [psutil.Process(pid) for pid, owner in testkit.pool_servers().items() if not alive(owner)]

def pytest_sessionfinish(session, exitstatus):
    "No kernel pool or shared Ray runtime may outlive its run (each stops within a second of it): fail the session if one does."
    import time
    if cmdpool.FRESH: print(f"\n{cmdpool.summary()}")
    cmdpool.stop()
    t0 = time.time()
    while (left := orphan_pools()) and time.time() - t0 < 10: time.sleep(0.2)
    if left:
        print(f"\nkernel pools or Ray runtimes outlived their runs: {[p.pid for p in left]}", file=sys.stderr)
        for p in testkit.server_processes([p.pid for p in left]) + left: p.kill()
        session.exitstatus = 1

@pytest.fixture
def scratch(tmp_path) -> Path:
    "A fresh copy of the repo on which nothing has run."
    root = copy_repo(tmp_path/'repo'); set_params(root, **SMALL); return root

def workbench(root, **env):
    """The config of the project at `root` as a user there who set nothing sees it: for reading its MLflow store in this
    process (an MLflow import once per test process, not ~2.3 CPU-s per helper interpreter). Milvus Lite never: `py`."""
    from mlops_workbench.config import load_config
    return load_config(root, env=clean_env(**env))

def roles(root) -> dict:
    "The registry's roles in the project at `root` (alias -> version), read in this process."
    from mlops_workbench.registry import aliases
    return aliases(workbench(root))

def py(code: str, cwd, check=True, **kw):
    """Run python code in an interpreter of this venv of its own (the tests never open Milvus Lite themselves: one process
    per directory), forked from the command pool unless `fresh=True` (see `sh`)."""
    return sh([sys.executable, '-c', code], cwd, check=check, **kw)

CHROME_FLAGS = ('--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--window-size=1280,1000')

def chrome(offline:bool=False, page_timeout:int=120):
    "Headless Debian Chromium driven by selenium (`make browser`), logging requests; `offline`: every request fails."
    chromium, driver = shutil.which('chromium'), shutil.which('chromedriver')
    if not (chromium and driver):
        pytest.fail("chromium and chromedriver are not installed: run `make browser` (tools/install_browser.sh)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    o = webdriver.ChromeOptions()
    o.binary_location = chromium
    for f in CHROME_FLAGS: o.add_argument(f)
    o.set_capability('goog:loggingPrefs', {'performance': 'ALL'})
    d = webdriver.Chrome(options=o, service=Service(executable_path=driver))
    d.set_page_load_timeout(page_timeout)
    if offline:
        d.execute_cdp_cmd('Network.enable', {})
        d.execute_cdp_cmd('Network.emulateNetworkConditions',
                          dict(offline=True, latency=0, downloadThroughput=-1, uploadThroughput=-1))
    return d

def requested(driver) -> list:
    "URLs the browser requested since the last call (Chrome's performance log)."
    import json
    urls = []
    for e in driver.get_log('performance'):
        m = json.loads(e['message'])['message']
        if m['method'] == 'Network.requestWillBeSent': urls.append(m['params']['request']['url'])
    return urls
