"""Scratch copies of the repo and the environment of a user who set nothing: what the tests (tests/conftest.py), the
benchmarks and the docs builder (tutorials run in a copy) share. No pytest here: plain functions."""
import os, re, shutil, subprocess, sys, tempfile, threading, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RESULTS = ('dvc.lock', 'metrics/', 'plots/', 'models/', 'reports/')   # a run's results, recorded on another machine
STATE_ENV = ('MLFLOW_', 'MILVUS_', 'MLWB_', 'RAY_')                    # variables that point the workbench elsewhere

def clean_env(**extra) -> dict:
    "The environment of a user who set nothing: embedded backends, this venv first on PATH."
    env = {k: v for k, v in os.environ.items() if not k.startswith(STATE_ENV)}
    env['PATH'] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}

PORTS = (20000, 32000)   # below Linux's ephemeral ports (ip_local_port_range: 32768-60999), above Ray's worker ports

def free_port(lo:int=PORTS[0], hi:int=PORTS[1], claims:Path|None=None) -> int:
    """A free loopback port for a server that a test starts, claimed for 30 min in a folder every test process shares
    (`claims`, default /tmp/mlwb-test-ports) so no other test takes it meanwhile. Outside the ephemeral range, where
    the kernel picks the ports of `bind(0)` and `connect()`: a port taken from there is free when asked, but the
    sockets of the other shards' kernels, Ray and Milvus Lite can take it in the seconds before the server binds it."""
    import random, socket
    claims = Path(claims or Path(tempfile.gettempdir())/'mlwb-test-ports')
    claims.mkdir(exist_ok=True)
    now = time.time()
    for old in claims.iterdir():   # claims of earlier runs
        try:
            if now - old.stat().st_mtime > 1800: old.unlink()
        except OSError: pass
    rng = random.Random()   # its own entropy: forked test processes share the `random` module's state
    for _ in range(500):
        port = rng.randint(lo, hi)
        try: os.close(os.open(claims/str(port), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError: continue   # another test's
        with socket.socket() as s:
            try:
                s.bind(('127.0.0.1', port))
                return port
            except OSError: continue   # in use by something that is not a test's server: keep the claim, try another
    raise RuntimeError(f"no free port in {lo}-{hi} after 500 tries ({claims} holds the claims)")

def copy_repo(dest:Path, root:Path=ROOT, skip:tuple=RESULTS) -> Path:
    "Copy the repo's tracked and unignored files (a clone plus uncommitted work, no results) into a fresh git repo."
    files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '-z'], cwd=root, capture_output=True,
                           text=True, check=True).stdout.split('\0')
    for f in filter(None, files):
        if f.startswith(skip) or not (root/f).is_file(): continue
        (dest/f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root/f, dest/f)
    for cmd in (['git', 'init', '-q', '-b', 'main'], ['git', 'add', '-A'],
                ['git', '-c', 'user.email=docs@localhost', '-c', 'user.name=docs', 'commit', '-qm', 'scratch copy']):
        subprocess.run(cmd, cwd=dest, check=True, capture_output=True)
    return dest

def commit(root:Path, message:str, *paths) -> str:
    "Commit `paths` (everything staged if none) in the repo copy at `root` as a test user; the new HEAD."
    git = ['git', '-c', 'user.email=t@localhost', '-c', 'user.name=t']
    subprocess.run([*git, 'commit', '-qm', message, *map(str, paths)], cwd=root, check=True, capture_output=True)
    return subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=root, check=True, capture_output=True, text=True).stdout.strip()

def copy_run(src:Path, # a repo copy on which the pipeline ran (its stores closed: no process holds Milvus Lite)
             dest:Path, # a folder that does not exist yet
            ) -> Path:
    "A copy of a pipeline run, results and stores included, re-based so that MLflow writes under `dest` (not `src`)."
    shutil.copytree(src, dest, symlinks=True, ignore=shutil.ignore_patterns('_site', '_build'))
    db = dest/'mlflow.db'
    if db.exists():   # the embedded store records absolute artifact locations: move them as a moved project would
        sys.path.insert(0, str(ROOT))
        from mlops_workbench.tracking import _relocate
        from mlops_workbench.config import load_config
        cfg = load_config(dest, env={})
        _relocate(db, cfg.experiment, cfg.artifact_root)
    return dest

def tiled_digits(root:Path, scale:int) -> tuple: # (params.yaml's source, number of rows)
    "Write the digits tiled `scale` times as data/raw/digits{scale}.csv (unique ids) in the copy at `root`."
    import numpy as np, pandas as pd
    from sklearn.datasets import load_digits
    d = load_digits()
    n = scale*len(d.data)
    px = [f'px_{r}_{c}' for r in range(8) for c in range(8)]
    df = pd.DataFrame(np.tile(d.data.astype(np.int8), (scale, 1)), columns=px)
    df.insert(0, 'label', np.tile(d.target, scale))
    df.insert(0, 'id', np.arange(n))
    (root/'data'/'raw').mkdir(parents=True, exist_ok=True)
    df.to_csv(root/'data'/'raw'/f'digits{scale}.csv', index=False)
    return f'data/raw/digits{scale}.csv', n

def machine_cpu() -> float:
    "CPU seconds the whole machine has spent busy (all cores: user, nice, system, irq, softirq, steal) since boot."
    f = [int(x) for x in open('/proc/stat').readline().split()[1:]]
    return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / os.sysconf('SC_CLK_TCK')

SERVER = re.compile(r"import (?:serve|serve_runtime); .*serve(?:_runtime)?\('([^']*)', (\d+), ")

def pool_servers(owners=None) -> dict:
    """The run-scoped servers running here, by pid: kernel pool servers (mlops_workbench.kernels) and shared Ray
    runtimes (distributed.serve_runtime); their owner's pid (only `owners`' if given)."""
    import psutil
    found = {}   # pid -> (parent pid, owner); a forked kernel keeps its server's command line: told apart by its parent
    for q in psutil.process_iter(['cmdline', 'ppid']):
        m = SERVER.search((q.info['cmdline'] or [''])[-1])
        if m: found[q.pid] = (q.info['ppid'], int(m.group(2)))
    return {pid: owner for pid, (ppid, owner) in found.items()
            if ppid not in found and (owners is None or owner in owners)}

def cluster_processes(*folders) -> list:
    """The processes of the Ray clusters in `folders` (their temporary directories): those naming one on their command
    line, and those started with one in their environment (`MLWB_RAY_CLUSTER_DIR`: Ray's client server names none)."""
    import psutil
    out = []
    for q in psutil.process_iter(['cmdline']) if folders else ():
        try:
            if any(f in a for f in folders for a in (q.info['cmdline'] or [])) or \
               q.environ().get('MLWB_RAY_CLUSTER_DIR', '').startswith(folders): out.append(q)
        except (psutil.Error, OSError): pass   # it ended meanwhile
    return out

def server_processes(pids) -> list:
    """The processes of the servers `pids` (from `pool_servers`) that are not their children: a shared Ray runtime's
    GCS, raylet, agents and client server (`ray start` daemonizes them)."""
    import psutil
    folders = []
    for pid in pids:
        try: m = SERVER.search(psutil.Process(pid).cmdline()[-1])
        except (psutil.Error, IndexError): continue
        if m and 'serve_runtime' in m.group(0): folders.append(m.group(1) + '/ray')
    return cluster_processes(*folders)

def peak_rss(cmd, cwd, timeout:float=3600, every:float=0.05) -> tuple: # (exit code, seconds, peak bytes, output)
    """Run `cmd`, sampling the summed RSS of its whole process tree (with the kernel pool and the Ray runtime its run
    owns: the pool's kernels are the pool server's children, Ray's daemons nobody's); exit code, wall time, peak, output."""
    import psutil
    t0 = time.monotonic()
    with tempfile.TemporaryFile('w+') as log:
        p = subprocess.Popen(cmd, cwd=cwd, env=clean_env(PYTHONUNBUFFERED='1'), stdout=log, stderr=subprocess.STDOUT,
                             text=True)   # a file, not a pipe: a long run's output never blocks it
        proc, peak, pools, n = psutil.Process(p.pid), 0, [], 0
        while p.poll() is None:
            try:
                tree = [proc] + proc.children(recursive=True)
                if n % 20 == 0:
                    servers = pool_servers({t.pid for t in tree})
                    pools = [psutil.Process(q) for q in servers] + server_processes(servers)
                n += 1
                for q in pools:   # the stage that starts the pool is its parent until it ends: count each process once
                    try: tree += [q] + q.children(recursive=True)
                    except psutil.Error: pass
                peak = max(peak, sum(q.memory_info().rss for q in {q.pid: q for q in tree}.values()))
            except psutil.Error: pass
            if time.monotonic() - t0 > timeout:
                p.kill()
                raise RuntimeError(f'{cmd} still running after {timeout} s')
            time.sleep(every)
        log.seek(0)
        return p.returncode, time.monotonic() - t0, peak, log.read()

LOOPBACK = {'127.0.0.1', '::1', '::ffff:127.0.0.1'}
MARK_ENV = 'TUTORIAL_RUN_MARK'   # set in a tutorial's kernel: its processes (Ray's nodes and workers too) inherit it

def process_tree(roots) -> list:
    "The live processes among `roots` (pids or psutil processes) and all their descendants."
    import psutil
    out = []
    for r in roots:
        try:
            p = r if isinstance(r, psutil.Process) else psutil.Process(r)
            out += [p] + p.children(recursive=True)
        except psutil.Error: pass
    return list({p.pid: p for p in out}.values())

def ss_listening() -> list:
    "(ip, port, pids) of every listening TCP socket on the machine, from one `ss -ltnpH`."
    out = subprocess.run(['ss', '-ltnpH'], capture_output=True, text=True, timeout=30).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 4: continue
        ip, port = parts[3].rsplit(':', 1)
        rows.append((ip.strip('[]').split('%')[0], int(port), {int(p) for p in re.findall(r'pid=(\d+)', line)}))
    return rows

def listening(procs) -> set:
    """(process name, ip, port) of every TCP socket in LISTEN state held by `procs`: one `ss` for all of them (psutil's
    per-process `net_connections` parses the machine's whole socket table once per process)."""
    import psutil
    by_pid, out = {p.pid: p for p in procs}, set()
    for ip, port, pids in ss_listening():
        for pid in pids & by_pid.keys():
            try: out.add((by_pid[pid].name(), ip, port))
            except psutil.Error: pass   # it ended meanwhile
    return out

KTHREADD = 2   # Linux's kernel-thread parent: its children are the kernel's threads

def marked_processes(mark:str, cache:dict|None=None) -> list:
    """The live processes whose environment has `MARK_ENV` = `mark` (each process's environment is read once when
    `cache`, a dict kept between calls, is given)."""
    import psutil
    cache = {} if cache is None else cache
    out = []
    for q in psutil.process_iter():
        try:
            key = (q.pid, q.create_time())
            if key not in cache:
                if KTHREADD in (q.pid, q.ppid()): cache[key] = False   # the kernel's threads (psutil can't read them)
                else:
                    env = q.environ()
                    if not env: continue   # mid-exec (its new environment not yet in place): look again next time
                    cache[key] = env.get(MARK_ENV) == mark
        except (psutil.Error, OSError): continue   # it ended meanwhile, or is not ours to read
        if cache[key]: out.append(q)
    return out

def started(pid:int|None=None) -> float:
    "When process `pid` (default: this one) started, as psutil says: with its pid, what tells it from a later process."
    import psutil
    return psutil.Process(pid).create_time()

def running(pid:int, start:float|None=None) -> bool:
    """Whether process `pid` runs (a zombie does not); with `start` (`started`), only the process that started then:
    pids wrap (at /proc/sys/kernel/pid_max, 32768 here; `make test` uses ~24 a second, a full cycle in ~22 min), so a
    pid seen long enough ago may now be another process's."""
    import psutil
    try:
        p = psutil.Process(pid)
        return p.status() != psutil.STATUS_ZOMBIE and (start is None or abs(p.create_time() - start) < 0.05)
    except psutil.Error: return False

def still_running(procs) -> list:
    "Those of `procs` (psutil processes, taken while they ran) that still run: the same processes, not zombies."
    return [p for p in procs if running(p.pid, p.create_time())]

def cmdline_or_none(q) -> list|None:
    "A process's command line; None when it has ended (or is a zombie)."
    import psutil
    try: return None if q.status() == psutil.STATUS_ZOMBIE else q.cmdline()
    except psutil.Error: return None

class Sampler(threading.Thread):
    """Samples the listening sockets (and command lines, which Ray's workers change as they take tasks) of `roots()`'s
    process trees every `every` s until stopped; `tree=False`: `roots()` returns every process to sample already."""
    def __init__(self, roots, every:float=0.3, tree:bool=True):
        super().__init__(daemon=True)
        self.roots, self.every, self.tree, self.seen, self.cmdlines, self.stop = roots, every, tree, set(), set(), threading.Event()
        self.procs = set()   # (pid, name) of every process seen
        self.processes = {}  # (pid, start) -> psutil process, of every process seen (a pid alone may be reused)
    def run(self):
        import psutil
        while not self.stop.wait(self.every):
            procs = process_tree(self.roots()) if self.tree else self.roots()
            self.seen |= listening(procs)
            for p in procs:
                try:
                    self.cmdlines.add(' '.join(p.cmdline()))
                    self.procs.add((p.pid, p.name()))
                    self.processes.setdefault((p.pid, p.create_time()), p)
                except psutil.Error: pass
    def exposed(self) -> list: return sorted(s for s in self.seen if s[1] not in LOOPBACK)
    def names(self) -> set: return {n for n, _, _ in self.seen}
    def ports(self) -> set: return {port for _, _, port in self.seen}
