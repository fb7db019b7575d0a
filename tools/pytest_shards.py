"""Run the test suite as three pytest processes at once (`make test-py`), four test workers in all:
  tutorials  the tests that read the tutorials' runs (tests/conftest.py marks them `tutorials`): the six tutorials, two
             at a time, the docs site built from them and browsed, the scenarios they walk through;
  pipeline   the tests that read the pipeline run (`project`, tutorial 01's run: marked `pipeline_run`);
  rest       every other test, on two pytest-xdist workers (`-n 2 --dist loadfile`: a file's tests on one worker, so
             its module fixtures are made once).
They share no state but the tutorials' runs: each test works in its own copy of the repo, and each tutorial runs once
for all of them, by the first process that asks (`MLWB_TUTORIAL_SHARE`, a folder made here and removed at the end).
The suite is CPU-bound (one test at a time keeps about one core busy: bench/README.md, `tools/test_costs.py`): four
workers keep both cores busy to the end, and the tutorials' shard no longer holds back the tests that need only the
pipeline run. (xdist alone cannot make these groups: `--dist loadgroup` does not group under pytest 9, which no longer
reads the `item._nodeid` it renames.)

Each line of output is prefixed with its shard's name; a shard's full output is also in `<logs>/<shard>.log`. The exit
status is pytest's when all agree, else the first failure's. Every shard is stopped (process group, TERM then KILL)
after `--bound` minutes or on Ctrl-C, saying so.

    python tools/pytest_shards.py -v -ra --durations=0          # what `make test-py` runs
    python tools/pytest_shards.py --serial -q                    # one pytest process, one test after the other
"""
import argparse, os, shlex, shutil, signal, subprocess, sys, tempfile, threading, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO/'tools'))
from testkit import machine_cpu
# shard name -> pytest `-m` expression (tests/conftest.py marks `tutorials` and `pipeline_run`) and its own options
SHARDS = {'tutorials': 'tutorials', 'pipeline': 'pipeline_run', 'rest': 'not (tutorials or pipeline_run)'}
OPTIONS = {'rest': ['-n', '2', '--dist', 'loadfile']}

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog="Other arguments go to every pytest process.",
                                formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument('--bound', type=float, default=85, help="minutes the whole run may take before every shard is stopped")
    p.add_argument('--logs', type=Path, default=REPO/'_build'/'test-logs', help="folder for each shard's full output")
    p.add_argument('--serial', action='store_true', help="one pytest process for every test (no shards)")
    return p.parse_known_args(argv)

def shard_commands(extra:list, serial:bool=False) -> dict:
    "Shard name -> the pytest command line that runs it."
    base = [sys.executable, '-m', 'pytest', *extra]
    # test files or ids among the arguments (`tests/test_x.py`, `tests/test_x.py::test_y`) replace the whole of `tests`
    where = [] if any((REPO/a.split('::')[0]).exists() for a in extra
                      if not a.startswith('-') and ('/' in a or a.split('::')[0].endswith('.py'))) else ['tests']
    if serial: return {'all': base + where}
    return {name: base + OPTIONS.get(name, []) + ['-m', expr, *where] for name, expr in SHARDS.items()}

def combined_status(codes:dict) -> int:
    "One exit status for the shards' pytest statuses: 5 (no test selected) counts as passed unless no shard ran a test."
    ran = {n: c for n, c in codes.items() if c != 5}
    if not ran: return 5
    return next((c for c in ran.values() if c != 0), 0)

def failures(log:str, limit:int=20) -> list:
    "The FAILED/ERROR lines of a pytest log's short summary (`-ra`), at most `limit` of them, the count of the rest last."
    summary = log.split('short test summary info')[-1] if 'short test summary info' in log else ''
    lines = [l.strip() for l in summary.splitlines() if l.startswith(('FAILED ', 'ERROR '))]
    return lines[:limit] + ([f"... and {len(lines) - limit} more"] if len(lines) > limit else [])

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
    procs, pumps, t0, c0 = {}, [], time.monotonic(), machine_cpu()
    share = tempfile.mkdtemp(prefix='mlwb-tutorials-')   # the tutorials' runs, shared by the shards (tests/conftest.py)
    env = {**os.environ, 'PYTHONUNBUFFERED': '1', 'MLWB_TUTORIAL_SHARE': share}
    try:
        for name, cmd in cmds.items():
            print(f"pytest_shards: {name}: {shlex.join(['python', *cmd[1:]])} (log: {logs/name}.log)", flush=True)
            procs[name] = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                           bufsize=1, start_new_session=True, env=env)
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
    shutil.rmtree(share, ignore_errors=True)
    codes = {n: p.poll() if p.poll() is not None else -9 for n, p in procs.items()}
    took = time.monotonic() - t0
    for name in cmds:   # each shard's summary line and failed tests again, together at the end (CI shows the tail)
        text = (logs/f'{name}.log').read_text()
        tail = [l for l in text.splitlines() if l.strip()]
        print(f"pytest_shards: {name}: exit {codes[name]}: {tail[-1].strip('= ') if tail else 'no output'}")
        for line in failures(text): print(f"pytest_shards: {name}:   {line}")
    status = combined_status(codes)
    busy = machine_cpu() - c0   # every process's CPU, daemons (Ray, servers) included, which `time make` does not count
    print(f"pytest_shards: {'passed' if status == 0 else 'FAILED'} in {took / 60:.1f} min (exit {status}); the machine "
          f"was busy {busy / 60:.1f} CPU-min ({busy / took:.2f} of {os.cpu_count()} cores)", flush=True)
    return status

if __name__ == '__main__':
    args, extra = parse_args()
    sys.exit(run(extra, args.bound, args.logs, args.serial))
