"""Personal columns and an encrypted source through the real prepare stage (papermill kernel, `mlwb stage prepare`)."""
import json, os
from pathlib import Path
import pandas as pd, pytest
from conftest import copy_repo, set_params, sh, clean_env

KEY = 'q3Jx7m1Qk9m0c2V8dGhpcy1pcy1hLXRlc3Qta2V5ISE='   # a test key (32 bytes, base64): never a real one
SENTINELS = {'email': 'sentinel.ada@leak-test.example', 'name': 'Sentinelia Lovelacey', 'phone': '+39 333 765 4321'}

def personal_csv(path:Path, n:int=300) -> Path:
    "digits-like rows with an email id, a name and a phone per row; row 0 holds the sentinels."
    from sklearn.datasets import load_digits
    d = load_digits()
    df = pd.DataFrame(d.data[:n], columns=[f'px_{i}' for i in range(64)])
    df.insert(0, 'label', d.target[:n])
    df.insert(0, 'phone', [f'+39 333 {i:03d} {i:04d}' for i in range(n)])
    df.insert(0, 'name', [f'Person {i}' for i in range(n)])
    df.insert(0, 'email', [f'user{i}@example.org' for i in range(n)])
    df.loc[0, ['email', 'name', 'phone']] = [SENTINELS['email'], SENTINELS['name'], SENTINELS['phone']]
    df['px_3'] = df['px_3'].astype(object)
    df.loc[1, 'px_3'] = f"call {SENTINELS['phone']}"   # a stray phone in a feature cell: rejected, scrubbed
    path.parent.mkdir(parents=True, exist_ok=True); df.to_csv(path, index=False)
    return path

PERSONAL = dict(source='data/raw/people.csv', id_col='email', personal={'email': 'pseudonymize', 'name': 'drop',
                'phone': 'drop'}, labels=list(range(10)))

@pytest.fixture
def people(tmp_path) -> Path:
    root = copy_repo(tmp_path/'repo')
    personal_csv(root/'data/raw/people.csv')
    set_params(root, prepare=PERSONAL)
    return root

def test_missing_key_stops_before_writing(people):
    r = sh(['mlwb', 'stage', 'prepare'], people, check=False)
    assert r.returncode != 0
    assert 'prepare.personal needs the secret key: set MLWB_KEY' in r.stderr, r.stderr[-2000:]
    assert not (people/'data/prepared').exists() and not (people/'data/quarantine').exists()
    assert not (people/'reports/prepare.ipynb').exists()

def test_encrypted_source_with_personal_columns(people):
    env = clean_env(MLWB_KEY=KEY)
    raw = people/'data/raw/people.csv'
    sh(['mlwb', 'encrypt', str(raw)], people, env=env)
    raw.unlink()
    set_params(people, prepare={'source': 'data/raw/people.csv.enc'})
    sh(['mlwb', 'stage', 'prepare'], people, env=env)
    train = pd.read_parquet(people/'data/prepared/train.parquet')
    assert str(train['id'].dtype) == 'int64' and train['id'].between(0, 10**18 - 1).all()   # keyed pseudonyms
    from mlops_workbench.secure import pseudonym, derive_key, parse_key
    ids = {str(i) for s in ('train', 'val', 'test') for i in pd.read_parquet(people/f'data/prepared/{s}.parquet')['id']}
    assert pseudonym(SENTINELS['email'], derive_key(parse_key(KEY), 'pseudonym')) in ids
    assert not {'name', 'phone', 'email'} & set(train.columns)
    q = (people/'data/quarantine/rejected.csv').read_text()
    assert '<phone>' in q and SENTINELS['phone'] not in q
    assert json.loads((people/'metrics/prepare.json').read_text())['rejected'] == 1
    assert not raw.exists()   # no plaintext written back
    from mlops_workbench.secure import scan
    rep = scan(people, list(SENTINELS.values()), env={'MLWB_KEY': KEY})
    assert rep.hits == [], rep.summary()
    assert rep.bytes > 0 and rep.areas.get('data', 0) > 0

def test_tampered_source_writes_nothing(people):
    env = clean_env(MLWB_KEY=KEY)
    raw = people/'data/raw/people.csv'
    sh(['mlwb', 'encrypt', str(raw)], people, env=env); raw.unlink()
    enc = people/'data/raw/people.csv.enc'
    b = bytearray(enc.read_bytes()); b[100] ^= 0x01; enc.write_bytes(bytes(b))
    set_params(people, prepare={'source': 'data/raw/people.csv.enc'})
    r = sh(['mlwb', 'stage', 'prepare'], people, env=env, check=False)
    assert r.returncode != 0 and 'data/raw/people.csv.enc: cannot decrypt: wrong key, or the file was altered' in r.stderr
    assert not (people/'data/prepared').exists()
    r = sh(['mlwb', 'decrypt', str(enc)], people, env=env, check=False)
    assert r.returncode == 1 and r.stderr.count('\n') == 1 and 'cannot decrypt' in r.stderr
    assert not raw.exists()

def test_run_checks_the_key_before_dvc(people):
    r = sh(['mlwb', 'run'], people, check=False)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
    assert 'prepare.personal needs the secret key' in r.stderr and 'Running stage' not in r.stdout
    assert not (people/'data/prepared').exists() and not list((people/'reports').glob('*.ipynb'))
