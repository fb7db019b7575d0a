"""Registry roles, the gate on real models, audited promotion and rollback, and refusals, on a real MLflow store in a
temporary folder (in a fresh interpreter: the same code a stage or the CLI runs)."""
import json
import pytest
from conftest import py

pytestmark = pytest.mark.slow   # four trained models and a registry lifecycle


GATE = r'''
import json, os, numpy as np
from mlops_workbench.config import load_config
from mlops_workbench.data import load_digits_frame, split_dataset, to_arrays
from mlops_workbench.train import build_model, train_model, seed_everything, predict_proba
from mlops_workbench.gate import gate_decision
df = load_digits_frame(); s = split_dataset(df, seed=0)
meta = dict(features=[c for c in df.columns if c.startswith('px_')], classes=list(range(10)))
(Xtr, ytr), (Xva, yva), (Xte, yte) = (to_arrays(s[k], meta) for k in ('train', 'val', 'test'))
def fit(X, y, epochs, lr):
    seed_everything(0, 1); m = build_model('mlp', 64, 10, hidden=[32]); train_model(m, X, y, Xva, yva, epochs=epochs, lr=lr, device='cpu', progress=False)
    return predict_proba(m, Xte).argmax(1)
weak, strong = fit(Xtr, ytr, 1, 0.002), fit(Xtr, ytr, 8, 0.01)
keep = ytr != 3                                     # a model that never saw a 3
no3 = fit(Xtr[keep], ytr[keep], 8, 0.01)
out = {name: gate_decision(yte, a, b, meta['classes']) for name, (a, b) in
       dict(better=(weak, strong), worse=(strong, weak), same=(strong, strong), regressing=(weak, no3)).items()}
print(json.dumps({k: dict(passed=v['passed'], delta=v['delta'], ci_low=v['ci_low'], regressed=list(v['regressed_classes'])) for k, v in out.items()}))
'''

def test_gate_on_real_models(tmp_path):
    r = json.loads(py(GATE, tmp_path).stdout)
    assert r['better']['passed'] and r['better']['ci_low'] > 0
    assert not r['worse']['passed'] and r['worse']['delta'] < 0
    assert not r['same']['passed']                       # no evidence of improvement: the champion stays
    assert r['regressing']['delta'] > 0 and not r['regressing']['passed'] and r['regressing']['regressed'] == ['3']

LIFE = r'''
import json, os, shutil, numpy as np
from pathlib import Path
from mlops_workbench.config import load_config
from mlops_workbench.train import build_model
from mlops_workbench.tracking import stage_run, get_client
from mlops_workbench.registry import register_model
from mlops_workbench import registry as R
os.environ['MLWB_USER'] = 'tester'
cfg = load_config('.', env={}); X = np.zeros((2, 4), dtype='float32'); out = {}
for _ in range(3):
    with stage_run('train', cfg=cfg) as (c, rid): register_model(build_model('mlp', 4, 3, hidden=[5]), X, rid, cfg=cfg)
out['registered'] = R.aliases(cfg)
R.promote(2, 'better on held-out data', 'runs:/x/gate/evidence.json', cfg=cfg); out['promoted'] = R.aliases(cfg)
R.promote(3, 'even better', cfg=cfg); out['promoted3'] = R.aliases(cfg)
out['rollback'] = [(r['alias'], r['from'], r['to']) for r in R.rollback('v3 breaks on live data', cfg=cfg)]; out['after_rollback'] = R.aliases(cfg)
out['again'] = R.rollback('v3 breaks on live data', cfg=cfg)
R.rollback('back to the first', to=1, cfg=cfg); out['to1'] = R.aliases(cfg)
# a version whose model files are gone is refused
src = Path(get_client(cfg).get_model_version_download_uri(cfg.model_name, '3').removeprefix('file://')); shutil.rmtree(src)
for name, f in dict(missing_files=lambda: R.promote(3, 'x', cfg=cfg), unknown=lambda: R.rollback('x', to=8, cfg=cfg), no_reason=lambda: R.promote(2, '', cfg=cfg)).items():
    try: f(); out[name] = None
    except R.RegistryError as e: out[name] = str(e)
out['log'] = R.read_audit(R.audit_path(cfg)); out['verified'] = R.verify_audit(R.audit_path(cfg))
out['v2_tags'] = {k: json.loads(v) for k, v in R.version_info(2, cfg)['tags'].items() if k.startswith('mlwb.audit.')}
print(json.dumps(out))
'''

def test_roles_promotion_rollback_and_audit(tmp_path):
    (tmp_path/'params.yaml').write_text('project: {}\n')
    r = json.loads(py(LIFE, tmp_path).stdout)
    assert r['registered'] == {'champion': 1, 'challenger': 3}
    assert r['promoted'] == {'champion': 2, 'previous': 1, 'challenger': 3}
    assert r['promoted3'] == {'champion': 3, 'previous': 2, 'challenger': 3}
    assert r['rollback'] == [['champion', 3, 2], ['previous', 2, None]] and r['after_rollback'] == {'champion': 2, 'challenger': 3}
    assert r['again'] == []
    assert r['to1']['champion'] == 1 and r['to1'].get('previous') is None
    assert 'has no model files' in r['missing_files'] and 'has no version 8 (registered: 1, 2, 3)' in r['unknown'] and 'reason is required' in r['no_reason']
    log = r['log']; assert r['verified'] == len(log)
    assert [x['seq'] for x in log] == list(range(1, len(log) + 1)) and log[0]['prev'] is None and all(x['prev'] for x in log[1:])
    promo = [x for x in log if x['alias'] == 'champion' and x['to'] == 2 and x['action'] == 'promote'][0]
    assert (promo['from'], promo['who'], promo['why'], promo['evidence']) == (1, 'tester', 'better on held-out data', 'runs:/x/gate/evidence.json')
    assert promo['when'].endswith('+00:00')
    # the same moves are on the model versions that they touch
    assert {(t['alias'], t['from'], t['to']) for t in r['v2_tags'].values()} >= {('champion', 1, 2), ('champion', 3, 2), ('previous', 1, 2), ('previous', 2, None)}
