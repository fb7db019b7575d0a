"""`mlwb search` answers from the champion's collection, not from whatever was embedded last (issue 14.3): two registered
versions on a real MLflow SQLite store, both embedded in Milvus Lite, the non-champion one last; the search defaults to
the champion, `--version`/`--alias` choose, and the output names the version."""
import json
import numpy as np
import pytest
from conftest import py, sh

pytestmark = pytest.mark.slow   # two trained, registered and embedded models


SETUP = """
import json
from pathlib import Path
import pandas as pd
from mlops_workbench.config import load_config, write_json
from mlops_workbench.data import load_digits_frame, split_dataset, to_arrays
from mlops_workbench.train import build_model, train_model, seed_everything, embed
from mlops_workbench.tracking import stage_run
from mlops_workbench import vectors, registry
cfg = load_config()
d = load_digits_frame(); splits = split_dataset(d, seed=0)
meta = dict(features=[c for c in d.columns if c.startswith('px_')], classes=list(range(10)))
df = pd.concat([v.assign(split=k) for k, v in splits.items()], ignore_index=True)
X, _ = to_arrays(df, meta); (Xtr, ytr), (Xva, yva) = to_arrays(splits['train'], meta), to_arrays(splits['val'], meta)
client = vectors.connect(cfg)
for seed in (0, 1):
    seed_everything(seed, 1); net = build_model('mlp', 64, 10, hidden=[16])
    train_model(net, Xtr, ytr, Xva, yva, epochs=1, lr=0.01, device='cpu', progress=False)
    with stage_run('train', {'seed': seed}, 'fp', cfg=cfg) as (mc, run_id): v = int(registry.register_model(net, X[:2], run_id, cfg=cfg).version)
    name = vectors.collection_name(cfg.model_name, v)
    vectors.store_embeddings(client, name, embed(net, X), dict(id=df['id'], label=df['label'], split=df['split'], prediction='0',
                             model_version=v, run_id=run_id, data_fingerprint='fp'), progress=False)
    write_json(cfg.path('metrics', 'embed.json'), dict(collection=name, model_version=v, run_id=run_id))   # as the embed stage does
if registry.aliases(cfg).get('champion') != 1: registry.promote(1, 'test: v1 is the champion')
print(json.dumps(registry.aliases(cfg)))
"""

@pytest.fixture(scope='module')
def two_versions(tmp_path_factory):
    root = tmp_path_factory.mktemp('search')
    (root/'params.yaml').write_text('project: {}\n')
    roles = json.loads(py(SETUP, root, timeout=600).stdout.strip().splitlines()[-1])
    assert roles['champion'] == 1
    return root

def search(root, *args, check=True):
    return sh(['mlwb', 'search', *args], root, check=check)

def test_search_defaults_to_the_champion_and_says_so(two_versions):
    out = search(two_versions, '--id', '5', '-k', '3').stdout
    assert 'searching model version 1 (champion), collection digits_classifier_v1' in out, out
    assert out.count('v1 (run') == 3 and 'v2 (run' not in out, out
    hits = json.loads(search(two_versions, '--id', '5', '-k', '3', '--json').stdout)
    assert len(hits) == 3 and {h['model_version'] for h in hits} == {1}
    from sklearn.datasets import load_digits
    x = ','.join(str(float(v)) for v in load_digits().data[0])
    hits = json.loads(search(two_versions, '--features', x, '-k', '2', '--json').stdout)
    assert {h['model_version'] for h in hits} == {1}

def test_version_and_alias_choose_the_collection(two_versions):
    out = search(two_versions, '--id', '5', '-k', '2', '--version', '2').stdout
    assert 'searching model version 2, collection digits_classifier_v2' in out and out.count('v2 (run') == 2, out
    r = search(two_versions, '--id', '5', '--version', '7', check=False)
    assert r.returncode == 1 and "no Milvus collection 'digits_classifier_v7'" in r.stderr, r.stderr
    r = search(two_versions, '--id', '5', '--alias', 'previous', check=False)
    assert r.returncode == 1 and "holds the role 'previous'" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
