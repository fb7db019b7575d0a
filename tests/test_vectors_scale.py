"""The embed stage at 10x the digits (issue 13.1): it used to ask for 21.6 GiB at 18k rows (a search on an unindexed,
already-loaded segment built a queries x vectors x width array). Real papermill stages on a scratch copy: prepare a
10x tiled digits CSV, train one small epoch, embed; the peak memory of the embed stage's whole process tree stays
bounded, every row is stored and indexed with the index params.yaml states, and the neighbours still mostly
share the label."""
import json
from conftest import py, sh, set_params
from testkit import tiled_digits, peak_rss

LIMIT = 3 * 2**30   # the stage's kernel imports torch, MLflow and pymilvus (~1 GiB); 21.6 GiB before the fix

def test_embed_stage_at_10x_digits_has_bounded_memory(scratch):
    src, n = tiled_digits(scratch, 10)
    set_params(scratch, prepare={'source': src}, train={'use_sweep': False, 'epochs': 1})
    sh(['mlwb', 'stage', 'prepare', '--no-progress'], scratch)
    sh(['mlwb', 'stage', 'train', '--no-progress'], scratch, timeout=1200)
    rc, _, peak, out = peak_rss(['mlwb', 'stage', 'embed', '--no-progress'], scratch, timeout=1200)
    assert rc == 0, out[-3000:]
    assert peak < LIMIT, f'embed stage peaked at {peak / 2**30:.2f} GiB'
    m = json.loads((scratch/'metrics'/'embed.json').read_text())
    assert m['count'] == n and m['knn_label_agreement'] > 0.8, m
    state = json.loads(py(f"""
import json
from mlops_workbench.config import load_config
from mlops_workbench import vectors
c, name = vectors.connect(load_config()), {m['collection']!r}
print(json.dumps(dict(count=vectors.count(c, name), index=c.describe_index(name, 'vector'))))
""", scratch).stdout.strip().splitlines()[-1])
    assert state['count'] == n
    assert str(state['index']['state']) == 'Finished' and int(state['index']['indexed_rows']) == n, state
    # the index and search breadth stated in params.yaml (embed.index_type, hnsw_m, ef), not AUTOINDEX's defaults
    assert state['index']['index_type'] == 'HNSW', state
    assert m['index']['index_type'] == 'HNSW' and m['index']['params']['M'] == 16 and m['ef'] == 256, m
    print(f"embed at {n} rows: peak {peak / 2**30:.2f} GiB")
