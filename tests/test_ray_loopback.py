"""Ray listens on loopback only (issue 8.3): every listening socket of the 2-node cluster that `start_cluster` makes,
running a 2-worker Ray Train group (and its torch process group), is on 127.0.0.1/::1; `stop_cluster` stops all of it
and nothing else. The private runtime of a
pipeline run is checked in test_ray_stages.py; `Sampler` is shared with it."""
import json, subprocess, sys, threading
import psutil
import pytest
from conftest import clean_env
from testkit import cluster_processes

pytestmark = pytest.mark.slow   # a 2-node Ray cluster


LOOPBACK = {'127.0.0.1', '::1', '::ffff:127.0.0.1'}

def tree(roots) -> list:
    "The live processes among `roots` and all their descendants."
    out = []
    for r in roots:
        try:
            p = r if isinstance(r, psutil.Process) else psutil.Process(r)
            out += [p] + p.children(recursive=True)
        except psutil.Error: pass
    return list({p.pid: p for p in out}.values())

def listening(procs) -> set:
    "(process name, ip, port) of every TCP socket in LISTEN state held by `procs`."
    out = set()
    for p in procs:
        try:
            name = p.name()
            conns = p.net_connections(kind='inet')
        except (psutil.Error, OSError): continue   # a process that ended meanwhile (psutil may say FileNotFoundError)
        out |= {(name, c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN}
    return out

class Sampler(threading.Thread):
    "Samples the listening sockets (and command lines) of `roots()`'s process trees every 0.3 s until stopped."
    def __init__(self, roots):
        super().__init__(daemon=True)
        self.roots, self.seen, self.cmdlines, self.stop = roots, set(), set(), threading.Event()
        self.procs = set()   # (pid, name) of every process seen
    def run(self):
        while not self.stop.wait(0.3):
            procs = tree(self.roots())
            self.seen |= listening(procs)
            for p in procs:
                try:
                    self.cmdlines.add(' '.join(p.cmdline()))
                    self.procs.add((p.pid, p.name()))
                except psutil.Error: pass
    def exposed(self) -> list: return sorted(s for s in self.seen if s[1] not in LOOPBACK)
    def names(self) -> set: return {n for n, _, _ in self.seen}

CLIENT = """
import json, os, numpy as np
from sklearn.datasets import load_digits
from mlops_workbench.distributed import ray_runtime, train_distributed
from mlops_workbench.train import TrainSpec
X, y = load_digits(return_X_y=True); X, y = X.astype('float32'), y.astype('int64')
with ray_runtime() as ray:
    _, hist, info = train_distributed(TrainSpec(hidden=[16], epochs=2, seed=0, device='cpu'), X[:1200], y[:1200],
                                      X[1200:], y[1200:], 10, num_workers=2)
    print(json.dumps(dict(info=info, nodes=[n['NodeManagerAddress'] for n in ray.nodes() if n['Alive']])))
"""

def test_loopback_cluster_listens_on_loopback_only(tmp_path):
    from mlops_workbench.distributed import start_cluster, stop_cluster
    env = start_cluster(nodes=2, cpus_per_node=1)
    key = env['MLWB_RAY_CLUSTER_DIR']
    # by folder on the command line, or in the environment (Ray's client server names no folder; its client, started
    # with the cluster's environment, counts too: it has ended when this is asked)
    cluster = lambda: cluster_processes(key)
    try:
        client = subprocess.Popen([sys.executable, '-c', CLIENT], cwd=tmp_path, env=clean_env(**env), text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        s = Sampler(lambda: cluster() + [client.pid])
        s.start()
        try: stdout, stderr = client.communicate(timeout=600)
        finally:
            s.stop.set()
            s.join()
        assert client.returncode == 0, stderr[-3000:]
        r = json.loads(stdout.strip().splitlines()[-1])
        assert r['info']['num_workers'] == 2 and r['nodes'] == ['127.0.0.1', '127.0.0.1']
        assert {'gcs_server', 'raylet'} <= s.names(), s.seen
        assert not s.exposed(), s.exposed()   # before: the nodes' servers on * and the host's address
    finally:
        before = cluster()
        stopped = stop_cluster(key)
    assert stopped >= len(before) > 0                 # stop_cluster stops only the cluster it started, and all of it
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in before)
