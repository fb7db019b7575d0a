"""Concurrent registration (issue 8.1): N processes register a version of the same model on a fresh SQLite store at
once. Every version is created once, audited once, the audit chain is valid and the roles are exactly what sequential
registration gives (champion = v1, challenger = the last version). The models are logged first (one process, to
keep the test fast); the N workers only register, so they import MLflow but not torch."""
import json, subprocess, sys, time
import pytest
from conftest import clean_env, py

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

WORKER = r'''
import sys, time
from pathlib import Path
from mlops_workbench.config import load_config
from mlops_workbench.registry import register_logged
cfg = load_config('.', env={}); rid, model_id, weights = sys.argv[1:4]
Path(f'ready.{rid}').touch(); t0 = time.monotonic()
while not Path('go').exists():                                        # start together, after the imports
    if time.monotonic() - t0 > 300: sys.exit('no start signal')
    time.sleep(0.02)
print(register_logged(rid, model_id, weights, cfg).version, rid)
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

@pytest.mark.parametrize('n', [8, 16])
def test_concurrent_registration(tmp_path, n):
    (tmp_path/'params.yaml').write_text('project: {}\n')
    (tmp_path/'worker.py').write_text(WORKER)
    (tmp_path/'prep.py').write_text(PREP)
    logged = json.loads(subprocess.run([sys.executable, 'prep.py', str(n)], cwd=tmp_path, env=clean_env(), capture_output=True,
                                       text=True, timeout=600, check=True).stdout.splitlines()[-1])
    procs = [subprocess.Popen([sys.executable, 'worker.py', *args], cwd=tmp_path, env=clean_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for args in logged]
    t0 = time.monotonic()
    while len(list(tmp_path.glob('ready.*'))) < n and time.monotonic() - t0 < 300 and all(p.poll() is None for p in procs):
        time.sleep(0.05)
    (tmp_path/'go').touch()                                          # all imported: register at once
    outs = [p.communicate(timeout=600) for p in procs]
    bad = [(p.returncode, e[-2000:]) for p, (o, e) in zip(procs, outs) if p.returncode != 0]
    assert not bad, bad
    got = {int(o.split()[0]): o.split()[1] for o, e in outs}
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
