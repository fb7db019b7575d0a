"""tools/testkit's process checks tell a process by its pid and its start: pids wrap (pid_max is 32768 here, and a
`make test` uses a few tens of thousands of them), so a test that remembers a pid for minutes may find another
process under it."""
import os, subprocess, sys, time
import psutil
from testkit import running, started, still_running

def test_a_process_is_its_pid_and_its_start():
    me = started()
    assert running(os.getpid()) and running(os.getpid(), me)
    assert not running(os.getpid(), me + 1)   # a later process that got this pid is not the one remembered
    assert not running(2 ** 22 + 12345)       # beyond any pid_max: no such process

def test_an_ended_child_does_not_run_zombie_or_reaped():
    p = subprocess.Popen([sys.executable, '-c', 'pass'])
    q, start = psutil.Process(p.pid), started(p.pid)
    t0 = time.monotonic()
    while q.status() != psutil.STATUS_ZOMBIE and time.monotonic() - t0 < 30: time.sleep(0.05)
    assert q.status() == psutil.STATUS_ZOMBIE and not running(p.pid, start) and still_running([q]) == []   # not reaped yet
    p.wait(30)
    assert not running(p.pid, start) and still_running([q]) == []

def test_still_running_keeps_the_live_ones():
    p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    try:
        live, me = psutil.Process(p.pid), psutil.Process()
        assert still_running([live, me]) == [live, me]
    finally:
        p.kill(); p.wait(30)
    assert still_running([live, me]) == [me]
