"""Run the test suite as two pytest processes at once (`make test-py`): the tests that read the session's tutorial runs
(marked `tutorials` by tests/conftest.py: the six tutorials, the pipeline run they share, the docs site; with them the
files that even the two out, marked `beside_tutorials`) in one, every other test in the other. The two share no state
(each test works in its own copy of the repo), so they use both cores; pytest-xdist's `--dist loadgroup` would do the
same but does not group under pytest 9 (it renames `item._nodeid`, which pytest 9 no longer reads).

Each line of output is prefixed with its shard's name; a shard's full output is also in `<logs>/<shard>.log`. The exit
status is pytest's when both agree, else the first failure's. Both shards are stopped (process group, TERM then KILL)
after `--bound` minutes or on Ctrl-C, saying so.

    python tools/pytest_shards.py -v -ra --durations=0          # what `make test-py` runs
    python tools/pytest_shards.py --serial -q                    # one pytest process, one test after the other
"""
import argparse, os, shlex, signal, subprocess, sys, threading, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# shard name -> pytest `-m` expression (tests/conftest.py marks `tutorials`, and `beside_tutorials` for the files that
# even the two out)
SHARDS = {'tutorials': 'tutorials or beside_tutorials', 'rest': 'not (tutorials or beside_tutorials)'}

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog="Other arguments go to both pytest processes.",
                                formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument('--bound', type=float, default=85, help="minutes the whole run may take before both shards are stopped")
    p.add_argument('--logs', type=Path, default=REPO/'_build'/'test-logs', help="folder for each shard's full output")
    p.add_argument('--serial', action='store_true', help="one pytest process for every test (no shards)")
    return p.parse_known_args(argv)

def shard_commands(extra:list, serial:bool=False) -> dict:
    "Shard name -> the pytest command line that runs it."
    base = [sys.executable, '-m', 'pytest', *extra]
    if serial: return {'all': base + ['tests']}
    return {name: base + ['-m', expr, 'tests'] for name, expr in SHARDS.items()}

def combined_status(codes:dict) -> int:
    "One exit status for the shards' pytest statuses: 5 (no test selected) counts as passed unless no shard ran a test."
    ran = {n: c for n, c in codes.items() if c != 5}
    if not ran: return 5
    return next((c for c in ran.values() if c != 0), 0)

def _pump(name:str, proc, log, width:int):
    for line in proc.stdout:
        log.write(line); log.flush()
        sys.stdout.write(f"{name:<{width}} | {line}"); sys.stdout.flush()

def _stop(procs:dict, why:str):
    print(f"pytest_shards: {why}: stopping {', '.join(n for n, p in procs.items() if p.poll() is None) or 'nothing'}",
          file=sys.stderr, flush=True)
    for sig, wait in ((signal.SIGTERM, 60), (signal.SIGKILL, 30)):
        for p in procs.values():
            if p.poll() is None:
                try: os.killpg(p.pid, sig)
                except ProcessLookupError: pass
        deadline = time.monotonic() + wait
        for p in procs.values():
            try: p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired: pass

def run(extra:list, bound_min:float=85, logs:Path=REPO/'_build'/'test-logs', serial:bool=False) -> int:
    "Start the shards, stream their output, wait (bounded) and return the combined exit status."
    logs.mkdir(parents=True, exist_ok=True)
    cmds = shard_commands(extra, serial)
    width = max(map(len, cmds))
    procs, pumps, t0 = {}, [], time.monotonic()
    try:
        for name, cmd in cmds.items():
            print(f"pytest_shards: {name}: {shlex.join(['python', *cmd[1:]])} (log: {logs/name}.log)", flush=True)
            procs[name] = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                           bufsize=1, start_new_session=True, env={**os.environ, 'PYTHONUNBUFFERED': '1'})
            pumps.append(threading.Thread(target=_pump, args=(name, procs[name], open(logs/f'{name}.log', 'w'), width),
                                          daemon=True))
            pumps[-1].start()
        while any(p.poll() is None for p in procs.values()):
            if time.monotonic() - t0 > bound_min * 60:
                _stop(procs, f"past the bound of {bound_min:g} min"); break
            time.sleep(1)
    except KeyboardInterrupt:
        _stop(procs, "interrupted")
    for t in pumps: t.join(30)
    codes = {n: p.poll() if p.poll() is not None else -9 for n, p in procs.items()}
    took = time.monotonic() - t0
    for name in cmds:   # each shard's summary line again, together at the end
        tail = [l for l in (logs/f'{name}.log').read_text().splitlines() if l.strip()]
        print(f"pytest_shards: {name}: exit {codes[name]}: {tail[-1].strip('= ') if tail else 'no output'}")
    status = combined_status(codes)
    print(f"pytest_shards: {'passed' if status == 0 else 'FAILED'} in {took / 60:.1f} min (exit {status})", flush=True)
    return status

if __name__ == '__main__':
    args, extra = parse_args()
    sys.exit(run(extra, args.bound, args.logs, args.serial))
