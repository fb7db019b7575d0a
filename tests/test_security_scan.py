"""The leak scan: the whole pipeline on a CSV source with sentinel personal values (encrypted at rest) and sentinel
secrets in the environment; afterwards `mlwb scan` finds none of them in any artifact."""
import json
from pathlib import Path
import pytest
from conftest import copy_repo, set_params, sh, clean_env, SMALL
from test_security_prepare import personal_csv, PERSONAL, SENTINELS, KEY

pytestmark = pytest.mark.slow   # a pipeline run, an MLflow server or registered models: not in `make test-fast`

SECRETS = dict(MLWB_KEY=KEY, MLFLOW_TRACKING_PASSWORD='sentinel-mlflow-password-7d1c',
               SENTINEL_API_TOKEN='sentinel-api-token-93af0b', DB_SECRET='sentinel-db-secret-55e2')

@pytest.fixture(scope='module')
def leaky(tmp_path_factory) -> Path:
    "A copy of the repo on which the whole pipeline ran once over the sentinel source, encrypted, with sentinel secrets."
    root = copy_repo(tmp_path_factory.mktemp('scan')/'repo')
    set_params(root, **SMALL)
    raw = personal_csv(root/'data/raw/people.csv', n=600)
    env = clean_env(**SECRETS)
    sh(['mlwb', 'encrypt', '--remove', str(raw)], root, env=env)
    set_params(root, prepare={**PERSONAL, 'source': 'data/raw/people.csv.enc'})
    r = sh(['mlwb', 'run'], root, env=env, timeout=1800)   # as `make run` runs it (checks, then `dvc repro`)
    (root.parent/'repro.log').write_text(r.stdout + r.stderr)
    return root

def test_no_sentinel_or_secret_in_any_artifact(leaky):
    vals = leaky.parent/'sentinels.txt'
    vals.write_text('\n'.join(SENTINELS.values()) + '\n')
    r = sh(['mlwb', 'scan', '--sentinels-file', str(vals), '--json'], leaky, check=False, env=clean_env(**SECRETS))
    rep = json.loads(r.stdout)
    print(json.dumps({k: rep[k] for k in ('files', 'bytes', 'areas', 'values')}, indent=1))
    assert r.returncode == 0 and rep['hits'] == [], rep['hits']
    assert rep['values'] == len(SENTINELS) + len(SECRETS)
    for area in ('reports', 'dvc.lock', '.dvc', 'mlflow.db', 'mlartifacts', 'milvus.db', 'registry', 'data', 'metrics'):
        assert rep['areas'].get(area, 0) > 0, f"the scan did not cover {area}: {sorted(rep['areas'])}"
    runs = leaky/'.dvc/cache/runs'   # DVC's run-cache (empty here: every stage output is persist: true) is under .dvc
    assert not runs.exists() or all(str(p.relative_to(leaky)).startswith('.dvc/') for p in runs.rglob('*'))
    enc = (leaky/'data/raw/people.csv.enc').read_bytes()   # the input is encrypted at rest: no sentinel there either
    assert not any(s.encode() in enc for s in SENTINELS.values()) and not (leaky/'data/raw/people.csv').exists()

def test_scan_finds_a_planted_leak(leaky):
    "The same scan is able to fail: a sentinel planted in a report and a secret in the MLflow store are found."
    import sqlite3
    planted = leaky/'reports'/'planted.txt'
    planted.write_text(f"oops {SENTINELS['email']}")
    con = sqlite3.connect(leaky/'mlflow.db')
    con.execute("INSERT INTO experiment_tags(key, value, experiment_id) VALUES ('leak', ?, (SELECT MIN(experiment_id) FROM experiments))",
                (SECRETS['SENTINEL_API_TOKEN'],))
    con.commit(); con.close()
    try:
        r = sh(['mlwb', 'scan', '--sentinel', SENTINELS['email']], leaky, check=False, env=clean_env(**SECRETS))
        assert r.returncode == 1
        assert 'reports/planted.txt: sentinel #1 x1' in r.stdout and 'mlflow.db: env SENTINEL_API_TOKEN' in r.stdout, r.stdout
        assert SENTINELS['email'] not in r.stdout + r.stderr and SECRETS['SENTINEL_API_TOKEN'] not in r.stdout + r.stderr
    finally:
        planted.unlink()
        con = sqlite3.connect(leaky/'mlflow.db'); con.execute("DELETE FROM experiment_tags WHERE key='leak'"); con.commit(); con.close()
