"""tools/testkit's process checks tell a process by its pid and its start: pids wrap (pid_max is 32768 here, and a
`make test` uses ~24 a second: a full cycle in ~22 min), so a test that remembers a pid long enough may find another
process under it; its free ports come from outside the range where the kernel picks other sockets' ports."""
import os, subprocess, sys, time
import psutil
from testkit import free_port, running, started, still_running

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

def test_free_ports_are_outside_the_ephemeral_range_and_claimed(tmp_path):
    import socket
    lo, hi = (int(x) for x in open('/proc/sys/net/ipv4/ip_local_port_range').read().split())
    ports = [free_port(claims=tmp_path) for _ in range(20)]
    assert len(set(ports)) == 20 and all(20000 <= p <= 32000 and not lo <= p <= hi for p in ports), ports
    assert sorted(int(f.name) for f in tmp_path.iterdir()) == sorted(ports)   # each one claimed
    with socket.socket() as s: s.bind(('127.0.0.1', ports[0]))   # free to bind
    # a range of two ports: one claimed by another test, one in use by a process that is not a test's server
    with socket.socket() as busy:
        busy.bind(('127.0.0.1', 0)); port = busy.getsockname()[1]
        (tmp_path/'two').mkdir(); (tmp_path/'two'/str(port + 1)).touch()
        try: free_port(port, port + 1, claims=tmp_path/'two')
        except RuntimeError as e: assert 'no free port' in str(e)
        else: raise AssertionError('a claimed or busy port was handed out')
    q = free_port(claims=tmp_path/'x')   # a free port, claimed by a run over 30 min ago: the claim has lapsed
    (tmp_path/'y').mkdir(); (tmp_path/'y'/str(q)).touch()
    os.utime(tmp_path/'y'/str(q), (time.time() - 3600, time.time() - 3600))
    assert free_port(q, q, claims=tmp_path/'y') == q

def test_a_process_caught_mid_exec_is_looked_at_again(monkeypatch):
    """/proc/PID/environ reads empty while a process is between exec's new memory and its new environment: the likely
    cause of a 2-node cluster's head raylet never being sampled, once, on a loaded machine (test_ray_loopback, 2026-12-07).
    `marked_processes` must not remember such a process as unmarked: the next call reads it again and finds the mark."""
    import testkit
    class Proc:
        def __init__(self, pid, envs, ppid=1): self.pid, self.envs, self.parent = pid, list(envs), ppid
        def create_time(self): return 1.0
        def ppid(self): return self.parent
        def environ(self):
            if self.parent in (0, 2): raise psutil.NoSuchProcess(self.pid)   # what psutil says of a kernel thread's
            return self.envs.pop(0) if len(self.envs) > 1 else self.envs[0]
    mid_exec, other = Proc(7, [{}, {testkit.MARK_ENV: 'm'}]), Proc(8, [{'PATH': '/bin'}])
    kthreadd, kworker = Proc(2, [{}], ppid=0), Proc(9, [{}], ppid=2)   # the kernel's threads: never an environment
    monkeypatch.setattr(psutil, 'process_iter', lambda: [mid_exec, other, kthreadd, kworker])
    cache = {}
    assert testkit.marked_processes('m', cache) == []            # mid-exec: not marked yet, and not remembered
    assert testkit.marked_processes('m', cache) == [mid_exec]    # its environment now in place
    # the kernel's threads are remembered as unmarked at once (not read again on every pass of a sampler)
    assert cache == {(7, 1.0): True, (8, 1.0): False, (2, 1.0): False, (9, 1.0): False}
