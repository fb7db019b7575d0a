"""The audit log anchored: keyed MACs per record and the chain head as a tag on the registered model (real MLflow SQLite)."""
import hashlib, json
from pathlib import Path
import pytest
from conftest import copy_repo, sh, py, clean_env

pytestmark = pytest.mark.slow   # a pipeline run, an MLflow server or registered models: not in `make test-fast`

KEY = 'q3Jx7m1Qk9m0c2V8dGhpcy1pcy1hLXRlc3Qta2V5ISE='   # a test key, never a real one

SETUP = """
from mlops_workbench.config import load_config
from mlops_workbench.tracking import ensure_store, get_client
from mlops_workbench.registry import move_alias
cfg = load_config(); ensure_store(cfg); c = get_client(cfg)
c.create_registered_model(cfg.model_name)
for _ in range(2): c.create_model_version(cfg.model_name, source=str(cfg.root/'models'))
move_alias('champion', 1, 'first version', cfg=cfg)
move_alias('challenger', 2, 'newly registered', cfg=cfg)
move_alias('champion', 2, 'gate passed', 'runs:/abc/gate', cfg=cfg)
"""

def _rewrite(log:Path, edit):
    "Edit the records and recompute every hash of the chain (what someone with write access to the file can do)."
    recs = [json.loads(l) for l in log.read_text().splitlines()]
    edit(recs)
    out, prev = [], None
    for r in recs:
        r['prev'] = prev
        line = json.dumps(r, sort_keys=True); out.append(line); prev = hashlib.sha256(line.encode()).hexdigest()
    log.write_text('\n'.join(out) + '\n')

@pytest.fixture(scope='module')
def registry(tmp_path_factory) -> Path:
    root = copy_repo(tmp_path_factory.mktemp('audit')/'repo')
    py(SETUP, root, env=clean_env(MLWB_KEY=KEY))
    return root

def verify(root, **env):
    return sh(['mlwb', 'history', '--verify'], root, check=False, env=clean_env(**env))

def test_intact_log_verifies(registry):
    r = verify(registry, MLWB_KEY=KEY)
    assert r.returncode == 0, r.stderr
    assert '3 records, hash chain intact, MACs verified, head anchored at record 3 in the registry' in r.stdout
    assert all('mac' in json.loads(l) for l in (registry/'registry/audit.jsonl').read_text().splitlines())

def test_naive_edit_is_detected(registry, tmp_path):
    log = registry/'registry/audit.jsonl'; orig = log.read_text()
    try:
        log.write_text(orig.replace('"who": "', '"who": "eve-', 1))
        for env, msg in (({'MLWB_KEY': KEY}, 'line 1: MAC does not match'), ({}, 'line 2 breaks the chain')):
            r = verify(registry, **env)
            assert r.returncode == 1 and msg in r.stderr and r.stderr.count('\n') == 1, r.stderr
    finally: log.write_text(orig)

def test_rewrite_with_recomputed_hashes_is_detected(registry):
    log = registry/'registry/audit.jsonl'; orig = log.read_text()
    try:
        def edit(recs): recs[1]['why'] = 'nothing to see'
        _rewrite(log, edit)
        r = verify(registry, MLWB_KEY=KEY)
        assert r.returncode == 1 and 'line 2: MAC does not match' in r.stderr, r.stderr
        r = verify(registry)   # without the key: the head anchored in the registry still catches it
        assert r.returncode == 1 and 'does not match the head anchored in the registry' in r.stderr, r.stderr
        def strip(recs):   # drop the MACs too: the head still catches it
            for x in recs: x.pop('mac', None)
        _rewrite(log, strip)
        r = verify(registry)
        assert r.returncode == 1 and 'head anchored' in r.stderr, r.stderr
        log.write_text(orig.splitlines(True)[0] + orig.splitlines(True)[1])   # truncated
        r = verify(registry)
        assert r.returncode == 1 and 'records were deleted' in r.stderr, r.stderr
    finally: log.write_text(orig)
    assert verify(registry, MLWB_KEY=KEY).returncode == 0
