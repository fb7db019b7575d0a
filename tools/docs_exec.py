"""Step 1 of the docs build (tools/build_docs.py): execute notebooks, cached by content hash.

Library notebooks (and nbs/index.ipynb) run on the project kernel in nbs/, as nbdev_test runs them; tutorials run with
papermill in a scratch copy of the repo. An executed copy is stored under `<cache>/<name>.<key>.ipynb`, where the key
hashes the notebook and what it runs (library sources; for tutorials also params.yaml, dvc.yaml and the stage
notebooks) by path *relative to the repo* and content: a scratch copy of the repo finds the executions of the
checkout (`make test-nbs` fills the cache that `make docs` and the docs tests read).

The library notebooks of one build run on forks of one kernel pool (`mlops_workbench.kernels`, what `mlwb run` gives
its stages): its server imports torch, MLflow, Ray, ... once, where a cold kernel per notebook imported them again
(`MLWB_KERNEL_POOL=0`: cold kernels)."""
import concurrent.futures as cf, contextlib, hashlib, os, re, subprocess, sys, tempfile, time
from pathlib import Path
from testkit import clean_env, copy_repo

BIN = Path(sys.executable).parent
KERNEL = 'mlops-workbench'
_re_directive = re.compile(r'^\s*#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$')

def log(*a): print('docs:', *a, file=sys.stderr, flush=True)

def _digest(root:Path, *paths) -> str:
    "A key for the files `paths`: their paths relative to `root` and their contents (the same in every copy of the repo)."
    h = hashlib.sha256()
    for p in map(Path, paths):
        h.update(str(p.relative_to(root) if p.is_relative_to(root) else p).encode())
        h.update(p.read_bytes() if p.is_file() else b'')
    return h.hexdigest()[:16]

def _lib_sources(root:Path) -> list: return sorted((root/'mlops_workbench').glob('*.py'))

def _pipeline_sources(root:Path) -> list:
    return [*_lib_sources(root), root/'params.yaml', root/'dvc.yaml', *sorted((root/'nbs'/'stages').glob('*.ipynb'))]

def _eval_false(cell) -> bool:
    for line in ''.join(cell['source']).splitlines():
        m = _re_directive.match(line)
        if not m: break
        if m[1] == 'eval' and m[2].lower() == 'false': return True
    return False

@contextlib.contextmanager
def library_pool(root:Path, # the repo whose notebooks run (the server starts there)
                 n:int, # how many notebooks will ask: a pool for fewer than 2 costs more than it saves
                ):
    "A kernel pool for the library notebooks run inside (yields its folder; None: cold kernels)."
    if n < 2 or os.environ.get('MLWB_KERNEL_POOL') == '0':
        yield None
        return
    from mlops_workbench.kernels import start_pool, stop_pool, interpreter
    from mlops_workbench.stages import kernel_specs
    folder = Path(tempfile.mkdtemp(prefix=f'mlwb-pool-{os.getpid()}-'))   # the server ends with this process
    try:
        start_pool(folder, os.getpid(), root, interpreter(kernel_specs().get_kernel_spec(KERNEL).argv))
        yield folder
    finally: stop_pool(folder)

def execute_notebook(src:Path, # a library notebook (or index.ipynb)
                     dest:Path, # where the executed copy goes
                     timeout:int=600,
                     pool:Path|None=None): # a kernel pool's folder (`library_pool`): the kernel is a fork of it
    "Run `src` on the project kernel with its folder as working directory, skipping `#| eval: false` cells."
    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(src, as_version=4); skipped = []
    for i, c in enumerate(nb.cells):
        if c.cell_type == 'code' and _eval_false(c): skipped.append(i); c.cell_type = 'raw'; c.pop('outputs'); c.pop('execution_count')
    from mlops_workbench.stages import kernel_manager
    with tempfile.TemporaryDirectory(prefix='mlwb-docs-') as d:   # the stage runner's kernel: IPC sockets and its key in `d`
        km = kernel_manager(KERNEL, d)
        if pool is not None:
            from mlops_workbench.kernels import pooled_provisioner
            pooled_provisioner(km, pool)   # a cold kernel where the pool cannot serve (it says why on stderr)
        client = NotebookClient(nb, km=km, timeout=timeout, kernel_name=KERNEL, resources={'metadata': {'path': str(src.parent)}})
        client.execute(cleanup_kc=True)   # a client given its km leaves the kernel running unless told (nbclient)
    for i in skipped: c = nb.cells[i]; c.cell_type = 'code'; c.outputs = []; c.execution_count = None
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f'.tmp-{dest.name}')   # atomic: a killed run leaves no half notebook that looks cached
    nbformat.write(nb, tmp); tmp.replace(dest)
    return dest

def execute_tutorial(nb:Path, # a tutorial notebook inside a repo copy (it may change that copy: run the pipeline, edit params)
                     dest:Path, # the executed notebook
                     timeout:int=1800, # seconds per cell
                     bound:float|None=None, # seconds for the whole notebook (None: no bound but the cells')
                     env:dict|None=None, # variables to add to the kernel's environment (a test marks a run's processes)
                    ) -> Path:
    "Run a tutorial with papermill on the project kernel, from its own folder, as a user who set no env vars."
    dest.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(BIN/'papermill'), str(nb), str(dest), '-k', KERNEL, '--cwd', str(nb.parent), '--no-progress-bar',
           '--execution-timeout', str(timeout)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=clean_env(PYTHONUNBUFFERED='1', **(env or {})))
    try: _, err = p.communicate(timeout=bound)
    except subprocess.TimeoutExpired:
        _kill_tree(p.pid)
        p.communicate()
        raise RuntimeError(f"tutorial {nb.name} did not finish in {bound:.0f} s: stopped (executed copy: {dest})") \
            from None
    if p.returncode != 0: raise RuntimeError(f"tutorial {nb.name} failed (executed copy: {dest}):\n{err[-3000:]}")
    return dest

def _kill_tree(pid:int, grace:float=30):
    "SIGTERM process `pid` and all it started (its kernel, the kernel's servers); SIGKILL after `grace` s."
    import psutil
    try: procs = [psutil.Process(pid)]
    except psutil.Error: return
    try: procs += procs[0].children(recursive=True)
    except psutil.Error: pass
    for q in procs:
        try: q.terminate()
        except psutil.Error: pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for q in alive:
        try: q.kill()
        except psutil.Error: pass

def _run_tutorial_in_copy(src:Path, dest:Path, root:Path) -> Path:
    with tempfile.TemporaryDirectory(prefix='mlwb-tutorial-') as d:
        copy = copy_repo(Path(d), root)
        return execute_tutorial(copy/src.relative_to(root), dest)

def executed(files:dict, root:Path, cache:Path, tutorials:str, executed_dir:Path|None, workers:int) -> dict:
    "Map each notebook to the copy the site shows: executed (from the cache or run now), else the source itself."
    jobs, out = {}, {}
    lib = {src: cache/f'{src.stem}.{_digest(root, src, *_lib_sources(root))}.ipynb' for src in files['home'] + files['reference']}
    with library_pool(root, sum(not d.exists() for d in lib.values())) as pool:
        for src, dest in lib.items():
            out[src] = dest
            if not dest.exists(): jobs[src] = (execute_notebook, src, dest, 600, pool)
        for src in files['tutorials']:
            if executed_dir and (executed_dir/src.name).exists(): out[src] = executed_dir/src.name; continue
            if tutorials == 'skip': out[src] = src; continue
            key = _digest(root, src, *_pipeline_sources(root)); dest = cache/'tutorials'/f'{src.stem}.{key}.ipynb'
            out[src] = dest
            if not dest.exists(): jobs[src] = (_run_tutorial_in_copy, src, dest, root)
        ready = len(out) - len(jobs)
        log(f"1/4 execute: {len(jobs)} notebook(s) to run, {workers} at a time"
            + (f"; {ready} ready (cached or given)" if ready else '') + ('; library notebooks on a kernel pool' if pool else ''))
        if jobs:
            t0 = time.monotonic()
            with cf.ProcessPoolExecutor(max_workers=workers) as ex:
                futs = {ex.submit(_timed, *job): src for src, job in jobs.items()}
                failed = []
                for i, f in enumerate(cf.as_completed(futs), 1):
                    try: secs = f.result()
                    except Exception as e:   # every notebook runs; the failures are named together at the end
                        failed.append(f"{futs[f].relative_to(root)}: {str(e).strip()[-1500:]}")
                        log(f"  [{i}/{len(jobs)}] FAILED {futs[f].relative_to(root)}"); continue
                    log(f"  [{i}/{len(jobs)}] executed {futs[f].relative_to(root)} in {secs:.0f} s ({time.monotonic() - t0:.0f} s so far)")
                if failed: raise RuntimeError(f"{len(failed)} notebook(s) failed:\n" + '\n'.join(failed))
    for src in files['reports']: out[src] = src
    return out

def _timed(fn, src:Path, *args) -> float:
    "Run one execution job in a worker, saying when it starts; its seconds."
    log(f"  running {src.parent.name}/{src.name} ...")
    t0 = time.monotonic(); fn(src, *args); return time.monotonic() - t0
