"""The quarantine file encrypted at rest (issue 12.2) through the real prepare stage (`mlwb stage prepare`):
`prepare.encrypt_quarantine: true` writes data/quarantine/rejected.csv.enc only, the rejected value reaches neither
the disk in the clear nor the executed notebook, and `data.read_quarantine` decrypts it in memory."""
import pandas as pd, pytest
from conftest import copy_repo, set_params, sh, clean_env, py

pytestmark = pytest.mark.slow   # the prepare stage through papermill, twice

KEY = 'q3Jx7m1Qk9m0c2V8dGhpcy1pcy1hLXRlc3Qta2V5ISE='   # a test key (32 bytes, base64): never a real one
SENTINEL = 'sentinel-rejected-5c1e'

def test_prepare_encrypts_the_quarantine(tmp_path):
    root = copy_repo(tmp_path/'repo')
    from sklearn.datasets import load_digits
    d = load_digits()
    df = pd.DataFrame(d.data[:200], columns=[f'px_{i}' for i in range(64)]).astype(object)
    df.insert(0, 'label', d.target[:200]); df.insert(0, 'id', range(200))
    df.loc[5, 'px_3'] = SENTINEL
    (root/'data'/'raw').mkdir(parents=True, exist_ok=True); df.to_csv(root/'data'/'raw'/'q.csv', index=False)
    set_params(root, prepare=dict(source='data/raw/q.csv', encrypt_quarantine=True, labels=list(range(10))))
    r = sh(['mlwb', 'stage', 'prepare'], root, check=False)   # no key: stops before anything is written
    assert r.returncode != 0 and 'prepare.encrypt_quarantine needs the secret key' in r.stderr, r.stderr[-2000:]
    assert not (root/'data'/'quarantine').exists() and not (root/'data'/'prepared').exists()
    sh(['mlwb', 'stage', 'prepare'], root, env=clean_env(MLWB_KEY=KEY))
    q = root/'data'/'quarantine'
    assert sorted(p.name for p in q.iterdir()) == ['rejected.csv.enc']
    for f in (q/'rejected.csv.enc', root/'reports'/'prepare.ipynb'):
        assert SENTINEL.encode() not in f.read_bytes(), f
    assert '1 rejected (all in data/quarantine/rejected.csv.enc)' in (root/'reports'/'prepare.ipynb').read_text()
    code = ("from mlops_workbench.data import read_quarantine\nfrom mlops_workbench.secure import load_key, unsealer\n"
            "print(read_quarantine('data/quarantine', unsealer(load_key()))['_reason'].tolist())")
    out = py(code, root, env=clean_env(MLWB_KEY=KEY)).stdout
    assert f"px_3: not a number: '{SENTINEL}'" in out, out
