"""A moved project keeps working on its own files (issue 8.8): the embedded MLflow store records absolute artifact
locations; after the project folder is moved, registering and loading go to the new place and nothing is written
under the old path."""
import json
import pytest
from conftest import py

pytestmark = pytest.mark.slow   # two trainings and registrations on a real MLflow store


REGISTER = r'''
import json, numpy as np, torch
from mlops_workbench.config import load_config
from mlops_workbench.train import build_model, seed_everything
from mlops_workbench.tracking import stage_run, get_client, load_torch_model
from mlops_workbench import registry as R
cfg = load_config('.', env={}); seed = len(R.versions(cfg)); seed_everything(seed, 1)
X = np.ones((2, 4), dtype='float32'); m = build_model('mlp', 4, 3, hidden=[5]).eval()
with stage_run('train', {'seed': seed}, 'fp0', cfg=cfg) as (c, rid): mv = R.register_model(m, X, rid, cfg)
c = get_client(cfg); vs = R.versions(cfg)
print(json.dumps(dict(version=int(mv.version), versions=vs, problems={v: R.verify_version(v, cfg, load=True) for v in vs},
    same=bool((load_torch_model(mv.version, cfg)(torch.as_tensor(X)) == m(torch.as_tensor(X))).all()),
    locations=[c.get_experiment_by_name(cfg.experiment).artifact_location, c.get_run(rid).info.artifact_uri] +
              [c.get_model_version_download_uri(cfg.model_name, str(v)) for v in vs])))
'''

def test_moved_project_uses_its_own_store(tmp_path):
    a, b = tmp_path/'a', tmp_path/'moved'/'b'
    a.mkdir(); (a/'params.yaml').write_text('project: {}\n')
    first = json.loads(py(REGISTER, a).stdout.splitlines()[-1])
    assert first['version'] == 1 and all(l.startswith(a.as_uri()) for l in first['locations'])
    b.parent.mkdir(); a.rename(b)
    r = json.loads(py(REGISTER, b).stdout.splitlines()[-1])
    assert r['version'] == 2 and r['versions'] == [1, 2] and r['same']
    assert r['problems'] == {'1': [], '2': []}                         # v1's files found (and match) at the new place
    assert all(l.startswith(b.as_uri() + '/') for l in r['locations']), r['locations']
    assert not a.exists()                                              # nothing was written under the old path
