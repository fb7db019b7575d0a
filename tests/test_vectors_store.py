"""The vectors API on a real Milvus Lite (issue 8.5, 13): bad input is refused whole before the first write, an insert
is all-or-nothing, Milvus errors say what is wrong, and a search right after the embed stage's writes runs on an index
with bounded memory at 10x the digits. Each test runs in a fresh interpreter (one process per Milvus Lite directory)."""
import json, textwrap
import pytest
from conftest import py

SETUP = """
import json, numpy as np
from mlops_workbench.config import load_config
from mlops_workbench import vectors as V
c = V.connect(load_config('.', env={}))
def meta(ids, version=1): return dict(id=list(ids), label='0', split='train', prediction='0', model_version=version,
                                      run_id='r', data_fingerprint='f')
def attempt(fn):
    try: fn(); return 'ok'
    except Exception as e: return f'{type(e).__name__}: {e}'
rng = np.random.default_rng(0)
X = rng.normal(size=(500, 8)).astype('float32')
V.create_collection(c, 'c', 8)
"""

def run(code: str, tmp_path) -> dict:
    "Run SETUP + code in a fresh interpreter in tmp_path; the code sets `out`, printed as JSON."
    return json.loads(py(SETUP + textwrap.dedent(code) + "\nprint(json.dumps(out))", tmp_path).stdout.strip().splitlines()[-1])

def test_bad_vectors_are_refused_before_any_write(tmp_path):
    out = run("""
    bad = X.copy(); bad[3, 2] = np.nan; inf = X.copy(); inf[7, 0] = np.inf
    out = dict(nan=attempt(lambda: V.insert_embeddings(c, 'c', bad, meta(range(500)), progress=False)),
               inf=attempt(lambda: V.insert_embeddings(c, 'c', inf, meta(range(500)), progress=False)),
               dup=attempt(lambda: V.insert_embeddings(c, 'c', X[:6], meta([0, 1, 2, 3, 4, 2]), progress=False)),
               width=attempt(lambda: V.insert_embeddings(c, 'c', X[:, :4], meta(range(500)), progress=False)),
               count=V.count(c, 'c'), stored=len(c.query('c', filter='id != ""', output_fields=['id'])))
    """, tmp_path)
    assert 'row 3' in out['nan'] and "id '3'" in out['nan'] and 'NaN or infinite' in out['nan'], out['nan']
    assert 'row 7' in out['inf'], out['inf']
    assert "'2' appears twice (rows 2 and 5)" in out['dup'], out['dup']
    assert "width 4, but collection 'c' holds 8-d" in out['width'], out['width']
    assert (out['count'], out['stored']) == (0, 0)

def test_failed_batch_leaves_nothing_and_existing_ids_are_not_overwritten(tmp_path):
    out = run("""
    class Flaky:   # the real client with one injected fault: the 3rd insert call fails
        def __init__(self, c): self.c, self.n = c, 0
        def __getattr__(self, a): return getattr(self.c, a)
        def insert(self, *a, **kw):
            self.n += 1
            if self.n == 3: raise ConnectionError('injected')
            return self.c.insert(*a, **kw)
    first = V.insert_embeddings(c, 'c', X[:100], meta(range(100)), progress=False)
    failed = attempt(lambda: V.insert_embeddings(Flaky(c), 'c', X[100:], meta(range(100, 500)), batch_size=100, progress=False))
    after_fail = V.count(c, 'c')
    again = attempt(lambda: V.insert_embeddings(c, 'c', X[:10] + 5, meta(range(10), version=2), progress=False))
    hit = V.search(c, 'c', X[[4]], k=1)[0][0]
    out = dict(first=first, failed=failed, after_fail=after_fail, again=again, count=V.count(c, 'c'),
               hit=[hit['id'], hit['distance'], hit['model_version']])
    """, tmp_path)
    assert out['first'] == 100
    assert 'injected' in out['failed'] and out['after_fail'] == 100, out
    assert "already holds 10 of these ids" in out['again'] and 'replace=True' in out['again'], out['again']
    assert out['count'] == 100 and out['hit'] == ['4', 0.0, 1], out

def test_search_errors_name_the_collection_and_widths(tmp_path):
    out = run("""
    V.insert_embeddings(c, 'c', X, meta(range(500)), progress=False)
    out = dict(width=attempt(lambda: V.search(c, 'c', X[:2, :4], k=3)),
               missing=attempt(lambda: V.search(c, 'nope', X[:2], k=3)),
               nan=attempt(lambda: V.search(c, 'c', np.full((1, 8), np.nan), k=3)))
    """, tmp_path)
    assert "query vectors have width 4, but collection 'c' holds 8-d vectors" in out['width'], out['width']
    assert "no Milvus collection 'nope'" in out['missing'], out['missing']
    assert 'NaN or infinite' in out['nan'], out['nan']

RSS = """
import os, threading, time, resource, psutil, numpy as np, pandas as pd
LIMIT = 2.5 * 2**30   # bytes of RSS; brute force at 10x digits asks for ~16 GiB
def watch():
    p = psutil.Process()
    while True:
        if p.memory_info().rss > LIMIT:
            print(f'RSS over {LIMIT/2**30:.1f} GiB: the search is not bounded', flush=True); os._exit(3)
        time.sleep(0.02)
threading.Thread(target=watch, daemon=True).start()
from mlops_workbench.config import load_config
from mlops_workbench.data import load_digits_frame, split_dataset, to_arrays
from mlops_workbench.train import build_model, train_model, seed_everything, embed
from mlops_workbench import vectors as V
d = load_digits_frame(); feats = [c for c in d.columns if c.startswith('px_')]
rng = np.random.default_rng(0)
big = pd.concat([d.assign(**{f: d[f] + rng.normal(0, 0.3, len(d)) for f in feats}) for _ in range(10)], ignore_index=True)
big['id'] = np.arange(len(big))
splits = split_dataset(big, seed=0)
meta = dict(features=feats, classes=list(range(10)))
df = pd.concat([v.assign(split=k) for k, v in splits.items()], ignore_index=True)
X, y = to_arrays(df, meta)
seed_everything(0, 1); net = build_model('mlp', 64, 10, hidden=[128, 64])
Xtr, ytr = to_arrays(splits['train'], meta); Xva, yva = to_arrays(splits['val'], meta)
train_model(net, Xtr, ytr, Xva, yva, epochs=1, lr=0.01, device='cpu', progress=False)
E = embed(net, X)
c = V.connect(load_config('.', env={})); name = 'digits_classifier_v1'
# the embed stage's sequence: write the collection, then search every test example at once
V.create_collection(c, name, E.shape[1])
V.insert_embeddings(c, name, E, dict(id=df['id'], label=df['label'], split=df['split'], prediction='0', model_version=1,
                    run_id='r', data_fingerprint='f'), progress=False)
probe = (df['split'] == 'test').to_numpy()
t0 = time.perf_counter(); hits = V.search(c, name, E[probe], 5, filter='split == "train"'); dt = time.perf_counter() - t0
agree = float(np.mean([np.mean([h['label'] == str(l) for h in hs]) for hs, l in zip(hits, df['label'][probe])]))
print('RESULT', len(df), int(probe.sum()), E.shape[1], round(dt, 2), round(agree, 3),
      round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/2**20, 2), flush=True)
"""

@pytest.mark.slow   # a model trained and 18k vectors embedded
def test_search_after_embedding_10x_digits_has_bounded_memory(tmp_path):
    r = py(RSS, tmp_path, check=False, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    rows, queries, dim, seconds, agree, peak_gib = r.stdout.split('RESULT')[1].split()
    assert int(rows) == 17970 and int(queries) > 3000 and int(dim) == 64
    assert float(peak_gib) < 2.5 and float(agree) > 0.8, r.stdout
    print(f"10x digits: {rows} rows, {queries} queries x {dim}-d: search {seconds} s, peak RSS {peak_gib} GiB")

def test_killed_rebuild_leaves_the_old_collection_whole(tmp_path):
    "SIGKILL in the middle of rebuilding a collection (what the embed stage does): readers still get the old one, whole."
    run("""
    V.store_embeddings(c, 'v1', X[:300], meta(range(300)), progress=False)
    out = V.count(c, 'v1')
    """, tmp_path)
    r = py(SETUP + textwrap.dedent("""
    import os, signal
    class Killed:   # the real client; the process dies by SIGKILL at the 3rd insert call
        def __init__(self, c): self.c, self.n = c, 0
        def __getattr__(self, a): return getattr(self.c, a)
        def insert(self, *a, **kw):
            self.n += 1
            if self.n == 3: os.kill(os.getpid(), signal.SIGKILL)
            return self.c.insert(*a, **kw)
    V.store_embeddings(Killed(c), 'v1', X + 1, meta(range(500), version=2), batch_size=100, progress=False)
    """), tmp_path, check=False)
    assert r.returncode == -9, (r.returncode, r.stderr[-2000:])
    out = run("""
    before = dict(count=V.count(c, 'v1'), hit=V.search(c, 'v1', X[[7]], k=1)[0][0], names=sorted(c.list_collections()))
    V.store_embeddings(c, 'v1', X + 1, meta(range(500), version=2), progress=False)   # the rerun replaces it whole
    out = dict(before, after=V.count(c, 'v1'), version=V.search(c, 'v1', X[[7]] + 1, k=1)[0][0]['model_version'],
               names_after=sorted(c.list_collections()))
    """, tmp_path)
    assert out['count'] == 300 and out['hit']['id'] == '7' and out['hit']['model_version'] == 1, out
    assert out['after'] == 500 and out['version'] == 2 and out['names_after'] == ['c', 'v1'], out
