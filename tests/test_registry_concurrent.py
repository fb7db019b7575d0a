"""Concurrent registration (issue 8.1): N processes register a version of the same model on a fresh SQLite store at
once. Every version is created once, audited once, the audit chain is valid and the roles are exactly what sequential
registration gives (champion = v1, challenger = the last version). The models are logged first (one process, to
keep the test fast); the N workers only register. They are forked from one process that imported the workbench and
MLflow and opened nothing: each is its own process with its own SQLite connections and file locks, as N `mlwb`
processes are, without paying the imports N times (24 imports of MLflow were most of this test's two minutes)."""
import json, sys
import pytest
from conftest import py, sh

pytestmark = pytest.mark.slow   # up to 16 processes registering at once


PREP = r'''
import json, sys, numpy as np
from mlops_workbench.config import load_config
from mlops_workbench.train import build_model, seed_everything
from mlops_workbench.tracking import stage_run, log_torch_model, weights_sha256, ensure_store
cfg = load_config('.', env={}); out = []
for i in range(int(sys.argv[1])):                                     # a different tiny model per worker, logged not registered
    seed_everything(i, 1); m = build_model('mlp', 4, 3, hidden=[5])
    with stage_run('train', {'worker': i}, 'fp0', cfg=cfg) as (c, rid):
        out.append((rid, log_torch_model(m, np.zeros((2, 4), dtype='float32'), rid, cfg).model_id, weights_sha256(m)))
print(json.dumps(out))
'''

WORKERS = r'''
import json, multiprocessing as mp, sys
from mlops_workbench.config import load_config
from mlops_workbench.registry import register_logged
from mlops_workbench.tracking import ensure_store, get_client
import mlflow.tracking, mlflow.store.tracking.sqlalchemy_store, mlflow.store.model_registry.sqlalchemy_store   # what a
# process's first registration imports (~2 s): imported once here, before any store is opened, so safe to fork
cfg, logged = load_config('.', env={}), json.loads(open('logged.json').read())
ctx = mp.get_context('fork')
ready, done = ctx.Barrier(len(logged) + 1, timeout=300), ctx.Queue()
def work(rid, model_id, weights):
    try:
        ensure_store(cfg)                  # each opens the store (one at a time, under its lock) and reads its run,
        get_client(cfg).get_run(rid)
        ready.wait()                       # then all register at once
        done.put((register_logged(rid, model_id, weights, cfg).version, rid))
    except BaseException as e: done.put((f'{type(e).__name__}: {e}', rid))
procs = [ctx.Process(target=work, args=args) for args in logged]
for p in procs: p.start()
ready.wait()
got = [done.get(timeout=600) for _ in procs]
for p in procs: p.join(60)
print(json.dumps(dict(got=got, codes=[p.exitcode for p in procs])))
'''

CHECK = r'''
import json
from mlops_workbench.config import load_config
from mlops_workbench.tracking import get_client
from mlops_workbench import registry as R
cfg = load_config('.', env={}); c = get_client(cfg)
mvs = c.search_model_versions(f"name='{cfg.model_name}'")
print(json.dumps(dict(roles=R.aliases(cfg), log=R.read_audit(R.audit_path(cfg)), verified=R.verify_audit(R.audit_path(cfg)),
    runs={int(m.version): m.run_id for m in mvs},
    tags={int(m.version): sorted(k for k in m.tags if k.startswith('mlwb.audit.')) for m in mvs})))
'''

def test_concurrent_registration(tmp_path, n=16):
    "16 processes at once (8 was run too: the same scenario with less contention, ~20 CPU-s more for no other path)."
    (tmp_path/'params.yaml').write_text('project: {}\n')
    (tmp_path/'prep.py').write_text(PREP)
    logged = json.loads(sh([sys.executable, 'prep.py', str(n)], tmp_path, timeout=600).stdout.splitlines()[-1])
    (tmp_path/'logged.json').write_text(json.dumps(logged))
    (tmp_path/'workers.py').write_text(WORKERS)
    w = json.loads(sh([sys.executable, 'workers.py'], tmp_path, timeout=900).stdout.splitlines()[-1])
    assert w['codes'] == [0] * n and all(isinstance(v, int) for v, _ in w['got']), w
    got = {v: rid for v, rid in w['got']}
    r = json.loads(py(CHECK, tmp_path).stdout)
    runs = {int(k): v for k, v in r['runs'].items()}
    assert sorted(runs) == list(range(1, n + 1)) and runs == got          # one version per process, none twice
    assert r['roles'] == {'champion': 1, 'challenger': n}
    moves = [(x['alias'], x['from'], x['to'], x['action']) for x in r['log']]
    sequential = [('challenger', None, 1, 'register'), ('champion', None, 1, 'register')] + \
                 [('challenger', v - 1, v, 'register') for v in range(2, n + 1)]
    assert moves == sequential
    assert r['verified'] == n + 1
    # each version carries the audit records that touch it
    assert len(r['tags']['1']) == 3 and all(len(r['tags'][str(v)]) == (2 if v < n else 1) for v in range(2, n + 1))
