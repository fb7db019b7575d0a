"""Where the machine's CPU went while a command ran, by kind of process: a papermill kernel started cold or forked from
the run's pool, a Ray worker, Ray's daemons, pip, an `mlwb` command, a test's helper interpreter, ... Every process on
the machine is sampled from /proc (a command's daemons too, which `time` does not count because nobody waits for them);
one that lives less than the sampling interval is missed: its CPU shows in the "not sampled" line.

    .venv/bin/python tools/proc_costs.py --out _build/proc-costs.json -- make -o .venv/.installed test-py
    .venv/bin/python tools/proc_costs.py --report _build/proc-costs.json [--kind 'python -c' --top 15]
    .venv/bin/python tools/proc_costs.py --report _build/proc-costs.json --by-owner   # by test, tutorial, notebooks
"""
import argparse, collections, json, os, re, signal, subprocess, sys, threading, time
from pathlib import Path
from testkit import machine_cpu   # tools/ (stdlib only at import): the same busy-CPU count as the per-test log

HZ = os.sysconf('SC_CLK_TCK')
KINDS = (   # (kind, pattern on the command line): the first that matches names a process
    ('papermill kernel, cold', r'ipykernel_launcher'),
    ('papermill kernel, pool (server and forks)', r'kernels import serve|import serve; '),
    ("tests' command pool (server and forked commands)", r'import cmdpool; '),
    ("run's shared Ray runtime (server)", r'serve_runtime'),
    ('Ray worker', r'^ray::|ray/_private/workers/(default|setup)_worker\.py'),
    ('Ray GCS', r'gcs_server'),
    ('Ray raylet', r'/raylet'),
    ('Ray dashboard and agents', r'ray/dashboard/|runtime_env/agent|ray\.scripts|ray\._private\.services'),
    ('Ray log monitor, autoscaler, client server', r'log_monitor\.py|autoscaler/_private/monitor\.py|ray\.util\.client\.server'),
    ('Chromium', r'chrom'),
    ('pip', r'-m pip |/pip |pip/__pip-runner__'),
    ('git', r'^(\S*/)?git( |$)'),
    ('MLflow server', r'mlflow(\.exe)? server|mlflow models serve|scoring_server|uvicorn'),
    ('Sphinx', r'sphinx-build'),
    ('pytest', r'-m pytest|xdist|exec\(eval\(sys\.stdin'),
    ('papermill', r'papermill'),
)

def kind(cmd:str) -> str:
    "The kind of process a command line names (`KINDS`; an `mlwb`/`dvc` command by its subcommand; else its program)."
    for name, pat in KINDS:
        if re.search(pat, cmd): return name
    m = re.search(r'/bin/(mlwb(?:-edge)?|dvc) (\S+)', cmd)
    if m: return ' '.join(m.groups())
    m = re.search(r'mlops_workbench\.cli import main.*\) (\S+)', cmd)   # `mlwb` run as `python -c` (a server's own interpreter)
    if m: return f'mlwb {m.group(1)}'
    if re.search(r'python[0-9.]* (-\S+ )*-c', cmd): return 'python -c (a helper interpreter)'
    prog = cmd.split(' ')[0].rsplit('/', 1)[-1]
    return f'{prog} {cmd.split(" ")[1].rsplit("/", 1)[-1]}' if prog.startswith('python') and ' ' in cmd else prog or '?'

def sample(stop:threading.Event, every:float=0.5) -> dict:
    """(pid, start time) -> [command line, CPU seconds, parent pid, working folder] of every process seen until `stop`
    is set (a process already running at the first pass counts from then)."""
    seen, base, first = {}, {}, True
    while True:
        for p in os.listdir('/proc'):
            if not p.isdigit(): continue
            try:
                s = open(f'/proc/{p}/stat').read()
                r = s.rfind(')')
                f = s[r + 2:].split()
                key, cpu = (int(p), int(f[19])), (int(f[11]) + int(f[12])) / HZ
                if first: base[key] = cpu
                if key in seen: seen[key][1] = cpu - base.get(key, 0.0)
                else:
                    cmd = open(f'/proc/{p}/cmdline', 'rb').read().replace(b'\0', b' ').decode(errors='replace').strip()
                    try: cwd = os.readlink(f'/proc/{p}/cwd')
                    except OSError: cwd = ''
                    seen[key] = [cmd[:400] or s[s.find('(') + 1:r], cpu - base.get(key, 0.0), int(f[1]), cwd]
            except (OSError, IndexError, ValueError): pass   # it ended meanwhile
        first = False
        if stop.wait(every): return seen

def table(rows:list, machine:float, top:int, rest:str='not sampled') -> str:
    "A Markdown table of (kind, processes, CPU) rows, largest first, with the share of the machine's busy CPU."
    lines = ['| kind of process | processes | CPU (s) | share | CPU per process (s) |', '|---|---:|---:|---:|---:|']
    for name, n, cpu in sorted(rows, key=lambda r: -r[2])[:top]:
        lines.append(f'| {name} | {n} | {cpu:.1f} | {100 * cpu / (machine or 1):.1f}% | {cpu / n:.2f} |')
    sampled = sum(r[2] for r in rows)
    lines.append(f'| {rest} | | {machine - sampled:.1f} | '
                 f'{100 * (machine - sampled) / (machine or 1):.1f}% | |')
    lines.append(f'| **the machine, busy** | {sum(r[1] for r in rows)} | {machine:.1f} | 100% | |')
    return '\n'.join(lines)

NOT_SAMPLED = 'not sampled (processes shorter than the interval; the kernel)'   # the tables' last row but one

def _head(data:dict) -> str:
    "The report's first line: the command, its wall time, the machine's busy CPU."
    return (f"`{data.get('command', '?')}`: {data.get('wall', 0):.0f} s wall, "
            f"the machine busy {data['machine']:.0f} CPU-s\n\n")

def report(data:dict, top:int=25, only:str|None=None) -> str:
    "The table by kind; with `only`, the command lines of that kind instead (temporary folders shortened)."
    agg = collections.defaultdict(lambda: [0, 0.0])
    for _, cmd, cpu, *_ in data['procs']:
        k = kind(cmd) if only is None else (re.sub(r'\s+', ' ', re.sub(r'/tmp/\S+', '<tmp>', cmd))[:120] if kind(cmd) == only else None)
        if k is not None: agg[k][0] += 1; agg[k][1] += cpu
    rest = NOT_SAMPLED if only is None else f'other than {only}'
    return _head(data) + table([(k, n, c) for k, (n, c) in agg.items()], data['machine'], top, rest)

# a working folder -> what it belongs to: a test's tmp_path (pytest names it after the test, cut to 30 characters; a
# fixture's `tmp_path_factory.mktemp(name)` shows as its name, e.g. "test 01_quickstart": the shards' copy of the
# quickstart's run), a tutorial's run in the shared folder (tests/conftest.py), the repo's notebooks (`make test-nbs`)
OWNERS = ((r'/pytest-\d+/(?:popen-gw\d+/)?([^/]+?)\d*(?:/|$)', 'test {}'),
          (r'/mlwb-tutorials-[^/]+/([^/]+)', 'tutorial {}'),
          (r'/nbs(?:/|$)', 'notebooks'))

def owner(pid:int, procs:dict) -> str:
    """What a process works for: its working folder's owner (`OWNERS`), else its nearest sampled ancestor's, else '?'
    (`procs`: pid -> (working folder, parent pid))."""
    for _ in range(64):
        if pid not in procs: break
        cwd, ppid = procs[pid]
        for pat, fmt in OWNERS:
            m = re.search(pat, cwd)
            if m: return fmt.format(*m.groups())
        pid = ppid
    return '?'

def by_owner(data:dict, top:int=25) -> str:
    "The table by what each process works for (`owner`): a test, a tutorial, the notebooks; with its largest kinds."
    procs = {r[0]: (r[4] if len(r) > 4 else '', r[3]) for r in data['procs']}   # older samples have no folder
    agg, kinds = collections.defaultdict(lambda: [0, 0.0]), collections.defaultdict(collections.Counter)
    for pid, cmd, cpu, *_ in data['procs']:
        o = owner(pid, procs)
        agg[o][0] += 1; agg[o][1] += cpu
        kinds[o][kind(cmd)] += cpu
    largest = {o: '; '.join(f'{k} {c:.0f}' for k, c in kinds[o].most_common(3)) for o in agg}
    rows = [(f"{o} ({largest[o]})", n, c) for o, (n, c) in agg.items()]
    return _head(data) + table(rows, data['machine'], top, NOT_SAMPLED)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('--out', type=Path, help='write the samples here (JSON) when the command ends')
    p.add_argument('--report', type=Path, help='print the table of samples written before, instead of running')
    p.add_argument('--kind', help='list the command lines of this kind instead of the kinds')
    p.add_argument('--by-owner', action='store_true', help='with --report: by test or tutorial instead of by kind')
    p.add_argument('--top', type=int, default=25, help='rows to show (default 25)')
    p.add_argument('--every', type=float, default=0.5, help='sampling interval in seconds (default 0.5)')
    p.add_argument('command', nargs=argparse.REMAINDER, help='the command to run and measure (after --)')
    a = p.parse_args(argv)
    if a.report:
        data = json.loads(a.report.read_text())
        print(by_owner(data, a.top) if a.by_owner else report(data, a.top, a.kind))
        return 0
    cmd = a.command[1:] if a.command[:1] == ['--'] else a.command
    if not cmd: p.error('give a command to run after --, or --report FILE')
    stop, out = threading.Event(), {}
    sampler = threading.Thread(target=lambda: out.update(sample(stop, a.every)), daemon=True)
    t0, c0 = time.monotonic(), machine_cpu()
    sampler.start()
    proc = subprocess.Popen(cmd)
    try: rc = proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT); rc = proc.wait()
    stop.set(); sampler.join()
    data = dict(command=' '.join(cmd), exit=rc, wall=time.monotonic() - t0, machine=machine_cpu() - c0,
                procs=[[pid, c, cpu, ppid, cwd] for (pid, _), (c, cpu, ppid, cwd) in out.items()])
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = a.out.with_name(a.out.name + '.tmp')
        tmp.write_text(json.dumps(data))
        tmp.replace(a.out)
    print(report(data, a.top, a.kind), file=sys.stderr)
    return rc

if __name__ == '__main__': sys.exit(main())
