"""The stage guard: a stage started through a shell wrapper (DVC runs `sh -c 'mlwb stage …'`) ends when the process
behind the shell is killed, and removes its temporary outputs. No pipeline needed: the guard runs in a plain process."""
import os, signal, subprocess, sys, textwrap, time
import psutil

INNER = textwrap.dedent('''
    import sys, time
    from mlops_workbench.stages import _Guard
    with _Guard([sys.argv[1]]):
        open(sys.argv[1], 'w').write('half')
        print('ready', flush=True)
        time.sleep(60)
''')

def test_guard_ends_the_stage_when_the_process_behind_its_shell_dies(tmp_path):
    tmp = tmp_path/'.tmp-report.ipynb'
    script = tmp_path/'inner.py'
    script.write_text(INNER)
    # the outer process stands for `dvc repro`; `; true` keeps the shell from exec'ing its command (dash does not)
    outer = subprocess.Popen([sys.executable, '-c', 'import subprocess, sys; subprocess.run(sys.argv[1], shell=True)',
                              f'{sys.executable} {script} {tmp}; true'], stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
    t0 = time.time()
    while not tmp.exists() and time.time() - t0 < 30: time.sleep(0.1)
    assert tmp.exists(), 'the inner stage never started'
    tree = psutil.Process(outer.pid).children(recursive=True)
    assert any('inner.py' in ' '.join(p.cmdline()) for p in tree)
    os.kill(outer.pid, signal.SIGKILL)
    outer.wait()
    gone, alive = psutil.wait_procs(tree, timeout=10)
    assert not alive, [p.cmdline() for p in alive]
    assert not tmp.exists()

def test_guard_keeps_running_while_its_parents_live(tmp_path):
    tmp = tmp_path/'.tmp-report.ipynb'
    script = tmp_path/'inner.py'
    script.write_text(INNER)
    p = subprocess.Popen(f'{sys.executable} {script} {tmp}; true', shell=True, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == 'ready'
        time.sleep(2)   # four of the guard's checks
        assert p.poll() is None and tmp.exists()
    finally:
        for c in psutil.Process(p.pid).children(recursive=True): c.kill()
        p.kill()
        p.wait()
