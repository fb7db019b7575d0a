"""Model files are checked against the sha256 recorded at registration before anything is unpickled: a tampered file
is refused by `mlwb promote` and by `load_torch_model` (what the gate, evaluate, embed, monitor and serving load with)."""
from pathlib import Path
import pytest
from conftest import copy_repo, sh, py

pytestmark = pytest.mark.slow   # a pipeline run, an MLflow server or registered models: not in `make test-fast`

SETUP = """
import numpy as np
from mlops_workbench.config import load_config
from mlops_workbench.tracking import stage_run
from mlops_workbench.train import build_model
from mlops_workbench.registry import register_model, aliases
cfg = load_config(); X = np.zeros((2, 4), dtype='float32')
for seed in (1, 2):
    import torch; torch.manual_seed(seed)
    with stage_run('train', cfg=cfg) as (client, rid):
        register_model(build_model('mlp', 4, 3, hidden=[5]), X, rid, cfg=cfg)
print(sorted(aliases(cfg).items()))
"""

LOAD = """
from mlops_workbench.tracking import load_torch_model, ModelTampered
try: load_torch_model(2); print('LOADED')
except ModelTampered as e: print('REFUSED', e)
"""

def test_tampered_model_is_refused(tmp_path):
    root = copy_repo(tmp_path/'repo')
    assert "[('challenger', 2), ('champion', 1)]" in py(SETUP, root).stdout
    from mlops_workbench.config import load_config
    import mlflow
    mlflow.set_tracking_uri(load_config(root, env={}).tracking_uri)
    src = mlflow.MlflowClient().get_model_version_download_uri('digits-classifier', '2')
    pth = Path(src.removeprefix('file://'))/'artifacts'/'weights.pt'
    good = pth.read_bytes()
    assert 'LOADED' in py(LOAD, root).stdout
    pth.write_bytes(good[:-8] + b'\x00' * 8)   # same size, altered bytes
    r = sh(['mlwb', 'promote', '2', '--reason', 'looks better'], root, check=False)
    assert r.returncode == 1 and 'has an altered file artifacts/weights.pt' in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    out = py(LOAD, root).stdout
    assert 'REFUSED' in out and 'artifacts/weights.pt differ from the sha256 recorded at registration' in out, out
    assert "'champion': 1" in sh(['mlwb', 'history'], root).stdout   # no alias moved
    pth.write_bytes(good)
    assert sh(['mlwb', 'promote', '2', '--reason', 'restored'], root).returncode == 0
