"""The tests' short commands (`python -c CODE`, `python script.py`, `mlwb ARGS`) forked from one interpreter that has
imported the heavy libraries once (torch, MLflow, pandas, pymilvus, Ray, ...), instead of a fresh interpreter that
imports them again for every command (~2 CPU-s each here; a `make test` runs a few hundred).

A forked command gets what `subprocess.run` would give a fresh one: its argv (`sys.argv`, `sys.orig_argv`), folder,
environment, `sys.path` (its folder or script's folder first), a fresh `__main__`, stdin from /dev/null, stdout and
stderr on pipes, the interpreter's exit (threads joined, atexit run) and its exit status (negative: the signal that
killed it). What it cannot serve that way runs as a plain subprocess (`run` returns None): another program, interpreter
options, an environment that differs from the server's beyond run-time variables (`kernels.env_mismatch`: the
preloaded libraries read the rest at import), a server not started yet or gone. What a fork cannot tell apart from a
fresh interpreter, a test has to ask for one (`sh(..., fresh=True)`): which modules are imported, warnings that an
import prints. The server is the library's kernel pool design (`mlops_workbench.kernels`) serving commands: one per
pytest process, owned by it, gone when it ends."""
import atexit, contextlib, importlib, json, locale, os, selectors, shutil, signal, socket, subprocess, sys, tempfile
import re, threading, time, traceback
from pathlib import Path
from mlops_workbench.kernels import (PRELOAD, PIDFILE, SOCKET, LOG, alive, become_child, env_mismatch, ready_to_fork,
                                     serve_forks, stop_pool, _read_line)

BIN = Path(sys.executable).parent
SCRIPTS = ('mlwb',)   # console scripts of this venv that run forked (`dvc` and the servers' commands start fresh)
MODULES = tuple(m for m in PRELOAD if m != 'ipykernel.kernelapp')   # what the workbench's commands import

def target(argv:list, cwd:str|Path, env:dict) -> tuple|None: # ('c', code, args) or ('script', path, args); None: fresh
    "What a forked interpreter would run for `argv`, as a fresh one would resolve it; None where only a fresh one can."
    if not argv: return None
    exe = str(argv[0])
    if os.sep not in exe: exe = shutil.which(exe, path=env.get('PATH', '')) or exe
    exe = os.path.join(str(cwd), exe)
    if os.path.dirname(exe) == str(BIN) and os.path.basename(exe) in SCRIPTS:
        with open(exe, 'rb') as f: shebang = f.readline().strip()
        return ('script', exe, list(map(str, argv[1:]))) if shebang == f'#!{sys.executable}'.encode() else None
    if os.path.realpath(exe) != os.path.realpath(sys.executable) or os.path.dirname(exe) != str(BIN) or len(argv) < 2:
        return None
    first = str(argv[1])
    if first == '-c' and len(argv) > 2: return ('c', str(argv[2]), list(map(str, argv[3:])))
    if first.endswith('.py') and not first.startswith('-'):
        return ('script', os.path.join(str(cwd), first), list(map(str, argv[2:])))
    return None

LATE = re.compile(r'^PYTEST_|^MLFLOW_TRACKING_(URI|USERNAME|PASSWORD|TOKEN)$|^_MLFLOW_TELEMETRY_SESSION_ID$')   # read when used

def extra_path(base:dict, env:dict) -> list|None:
    """The `PYTHONPATH` entries a command puts before the site packages; None where a fork cannot (the server has one of
    its own, or an entry holds a module of the name of one the server has imported: a fresh interpreter would take that)."""
    if env.get('PYTHONPATH', '') == base.get('PYTHONPATH', ''): return []
    if base.get('PYTHONPATH'): return None
    entries = [e for e in env['PYTHONPATH'].split(os.pathsep) if e]
    if not all(map(os.path.isabs, entries)): return None   # relative to a folder the server is not in
    loaded = {m.split('.')[0] for m in sys.modules} - {'__main__', 'mlops_workbench', 'cmdpool'}
    return None if any(modules_in(e) & loaded for e in entries) else entries

def modules_in(folder:str) -> set:
    "The top-level modules and packages that `folder` on `sys.path` offers (a plain folder or `mlflow.db` is none)."
    import importlib.machinery as m
    suffixes = (*m.SOURCE_SUFFIXES, *m.BYTECODE_SUFFIXES, *m.EXTENSION_SUFFIXES)
    try: names = os.listdir(folder)
    except OSError: return set()
    found = {n.split('.')[0] for n in names if n.endswith(suffixes)}
    return found | {n for n in names if any(os.path.isfile(os.path.join(folder, n, f'__init__{x}')) for x in suffixes)}

def env_differs(base:dict, # the server's environment after its imports
                env:dict, # a command's
                added:dict, # what the imports set (a fresh interpreter's imports set them too)
               ) -> list: # the names whose difference would show in a forked command, sorted
    """Variables whose difference would show in a forked command (`kernels.env_mismatch` less `LATE`, `added`, and a
    `PYTHONPATH` that `extra_path` can emulate)."""
    return [k for k in env_mismatch(base, env) if not LATE.match(k) and not (k in added and env.get(k, added[k]) == added[k])
            and not (k == 'PYTHONPATH' and extra_path(base, env) is not None)]

def _exit_status(e:SystemExit) -> int:
    "The exit status an interpreter gives for an uncaught SystemExit (a message goes to stderr, status 1)."
    if e.code is None or isinstance(e.code, int): return e.code or 0
    print(e.code, file=sys.stderr)
    return 1

def _become_command(req:dict, fds:list, others:list, path:list, base:dict, added:dict):
    "In the forked child: run the command `req` describes, with stdout and stderr on `fds`; never returns."
    code = 1
    try:   # a session of its own (a timeout kills what it started too), the environment as after the same imports
        become_child(fds, others, req['cwd'], {**added, **req['env']})   # in a fresh interpreter
        extra = extra_path(base, req['env'])
        kind, what, args = target(req['argv'], req['cwd'], req['env'])
        sys.orig_argv = list(map(str, req['argv']))
        for m in [m for m in sys.modules if m.split('.')[0] in ('mlops_workbench', 'cmdpool')]:
            del sys.modules[m]   # the server's (this repo's): the command imports its own, from its folder first
        sys.path_importer_cache.clear()   # the finders of the server's folder
        importlib.invalidate_caches()
        if 'numpy' in sys.modules: sys.modules['numpy'].random.seed()   # its own entropy, as a fresh import seeds it
        if kind == 'c':
            import builtins, types
            sys.argv, sys.path[:] = ['-c', *args], ['', *extra, *path[1:]]
            main = types.ModuleType('__main__')
            main.__builtins__ = builtins
            sys.modules['__main__'] = main
            exec(compile(what, '<string>', 'exec'), main.__dict__)
        else:
            import runpy
            sys.argv, sys.path[:] = [what, *args], [os.path.dirname(what), *extra, *path[1:]]
            runpy.run_path(what, run_name='__main__')
        code = 0
    except SystemExit as e: code = _exit_status(e)
    except BaseException as e:   # as a fresh interpreter shows it: from the command's own frames
        tb = e.__traceback__
        while tb and tb.tb_frame.f_code.co_filename in (__file__, getattr(sys.modules.get('runpy'), '__file__', '')):
            tb = tb.tb_next
        traceback.print_exception(type(e), e, tb)
    finally:
        try:
            with contextlib.suppress(Exception): threading._shutdown()   # non-daemon threads, as at an interpreter's end
            atexit._run_exitfuncs()
        finally:
            for f in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception): f.flush()
            os._exit(code)

def _refusal(req:dict, base:dict, added:dict) -> str|None:
    "Why the server cannot run `req` as a fresh interpreter would (None: it can)."
    diff = env_differs(base, req.get('env') or {}, added)
    return (f"environment differs in {', '.join(diff)}" if diff else None) or \
           (None if os.path.isdir(req.get('cwd') or '') else f"no folder {req.get('cwd')!r}") or \
           (None if target(req.get('argv') or [], req.get('cwd') or '.', req.get('env') or {}) else 'not a command it runs')

def serve(folder:str|Path, owner:int, path:list) -> int:
    "The server: import `MODULES`, then fork one command per request until `owner` ends; `path`: a fresh `sys.path`."
    before = dict(os.environ)
    if not ready_to_fork(MODULES, 'command pool'): return 1
    base = dict(os.environ)
    added = {k: v for k, v in base.items() if before.get(k) != v}   # e.g. scikit-learn's KMP_*, Ray's RAY_CLIENT_MODE
    return serve_forks(folder, owner, lambda req: _refusal(req, base, added),
                       lambda req, fds, conn, others: _become_command(req, fds, [*others, conn], path, base, added),
                       'command pool', backlog=16)

_POOL = {}   # this process's server: its folder, pid and process
WAIT = 60    # seconds a command waits for the server to be ready (it imports for ~5 s here) before it starts fresh
FRESH = {}   # why commands that `run` was asked for started fresh: reason -> count (`summary`)

def start(env:dict) -> Path:
    "Start this process's server in the background with environment `env` (commands with another one start fresh)."
    folder = Path(tempfile.mkdtemp(prefix=f'mlwb-cmdpool-{os.getpid()}-'))
    code = (f"import sys; path = list(sys.path); sys.path.insert(0, {str(Path(__file__).parent)!r}); import cmdpool; "
            f"sys.exit(cmdpool.serve({str(folder)!r}, {os.getpid()}, path))")
    with open(folder/LOG, 'ab') as log:
        p = subprocess.Popen([sys.executable, '-c', code], cwd=str(folder), env=dict(env), stdin=subprocess.DEVNULL,
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    (folder/PIDFILE).write_text(str(p.pid))
    _POOL.update(folder=folder, pid=p.pid, proc=p)
    return folder

def summary() -> str:
    "How many commands ran forked and why the others started fresh."
    why = ', '.join(f"{n} {k}" for k, n in sorted(FRESH.items(), key=lambda kv: -kv[1]) if k != 'forked')
    return f"command pool: {FRESH.get('forked', 0)} commands forked" + (f"; started fresh: {why}" if why else '')

def _fresh(why:str):
    FRESH[why] = FRESH.get(why, 0) + 1

def stop():
    "Stop this process's server, if it started one."
    if _POOL:
        stop_pool(_POOL['folder'])
        _POOL['proc'].wait(10)
        _POOL.clear()

def _decode(b:bytes) -> str:
    "As `subprocess.run(text=True)` decodes: the locale's encoding, universal newlines."
    return b.decode(locale.getpreferredencoding(False)).replace('\r\n', '\n').replace('\r', '\n')

def _request(argv:list, cwd:str, env:dict):
    "Ask the server to fork `argv`: (its pid, the connection, stdout and stderr read ends), or None."
    path, deadline = _POOL['folder']/SOCKET, time.monotonic() + WAIT
    while not path.exists():   # still importing: a fresh interpreter would spend that time importing too
        if not alive(_POOL['pid']) or time.monotonic() > deadline: return _fresh('server not ready')
        time.sleep(0.05)
    r_out, w_out = os.pipe()
    r_err, w_err = os.pipe()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    try:
        s.connect(str(path))
        socket.send_fds(s, [json.dumps({'argv': list(map(str, argv)), 'env': env, 'cwd': cwd}).encode() + b'\n'],
                        [w_out, w_err])
        reply = _read_line(s)
    except (OSError, ValueError) as e:
        reply = {'refused': f"{type(e).__name__}: {e}"}
    finally:
        os.close(w_out)
        os.close(w_err)
    if 'pid' in reply: return reply['pid'], s, r_out, r_err
    _fresh(f"refused: {reply.get('refused')}")
    s.close()
    os.close(r_out)
    os.close(r_err)
    return None

def run(argv:list, # the command
        cwd:str|Path, # its folder
        env:dict, # its environment
        timeout:float|None=None, # seconds, as `subprocess.run`'s (then TimeoutExpired)
        base:dict|None=None, # the environment to start the server in, the first time (default: `env`)
       ) -> subprocess.CompletedProcess|None: # None: run it as a plain subprocess
    "`subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)`, forked from the server."
    cwd, env = str(cwd), dict(env)
    if target(argv, cwd, env) is None: return _fresh(f"not a command it runs ({' '.join(map(str, argv))[:60]})")
    if not _POOL: start(env if base is None else base)
    if not alive(_POOL['pid']): return _fresh('server gone')
    started = _request(argv, cwd, env)
    if started is None: return None
    _fresh('forked')
    pid, s, r_out, r_err = started
    out, sel, buf = {r_out: b'', r_err: b''}, selectors.DefaultSelector(), b''
    for fd in (r_out, r_err, s): sel.register(fd, selectors.EVENT_READ)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while sel.get_map():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                with contextlib.suppress(OSError): os.killpg(pid, signal.SIGKILL)
                raise subprocess.TimeoutExpired(argv, timeout, out[r_out], out[r_err])
            for key, _ in sel.select(left):
                fd = key.fileobj
                data = os.read(fd, 1 << 16) if fd is not s else s.recv(4096)
                if not data: sel.unregister(fd)
                elif fd is s: buf += data
                else: out[fd] += data
    finally:
        sel.close()
        s.close()
        os.close(r_out)
        os.close(r_err)
    status = json.loads(buf)['exit'] if buf.endswith(b'\n') else 255   # no line: the server went with it
    return subprocess.CompletedProcess(argv, status, _decode(out[r_out]), _decode(out[r_err]))
