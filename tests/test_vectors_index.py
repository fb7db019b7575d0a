"""The index of a collection (issue 13.2): `store_embeddings` builds the index that `index_spec` names (HNSW with its
graph params, or FLAT; M really reaches Milvus Lite, which ignored it before), the search breadth `ef` is
passed through, and a `create_index` call that the gRPC client
resent after a long build (the first call made the index; the resend gets "index already exists", seen at 100k rows
while the machine was busy) does not fail the insert."""
import json
from conftest import py

CODE = r'''
import json
import numpy as np
from mlops_workbench.config import load_config
from mlops_workbench import vectors as V

class Resend:
    "The real client, except that create_index is sent twice, as a gRPC retry after a lost connection does."
    def __init__(self, c): self.c = c
    def __getattr__(self, a): return getattr(self.c, a)
    def create_index(self, *a, **kw):
        self.c.create_index(*a, **kw)
        return self.c.create_index(*a, **kw)

c = V.connect(load_config('.', env={}))
rng = np.random.default_rng(0)
X = rng.normal(size=(3000, 16)).astype('float32')
meta = dict(id=[str(i) for i in range(3000)], label='0', split='train', prediction='0', model_version=1, run_id='r',
            data_fingerprint='f')
out = {}
for name, spec in (('h', V.index_spec('HNSW', 8, 64)), ('f', V.index_spec('FLAT'))):
    V.store_embeddings(c, name, X, meta, progress=False, index=spec)
    d = c.describe_index(name, 'vector')
    exact = np.argsort(((X[:50, None] - X[None]) ** 2).sum(-1), axis=1)[:, :10]
    found = [[int(h['id']) for h in hs] for hs in V.search(c, name, X[:50], 10, ef=64)]
    hits = [len(set(a) & set(b)) / 10 for a, b in zip(found, exact)]
    out[name] = dict(index_type=d['index_type'], recall=float(np.mean(hits)))
# the graph's M reaches Milvus Lite (it reads build params only from a JSON 'params' entry; pymilvus flattens them):
# at a search breadth of 8, a graph of 4 links per node finds far fewer true neighbours than one of 48
Y, Q = rng.normal(size=(6000, 32)).astype('float32'), rng.normal(size=(100, 32)).astype('float32')
kth = np.sort(((Q[:, None] - Y[None]) ** 2).sum(-1), axis=1)[:, 9:10]
ymeta = {**meta, 'id': [str(i) for i in range(len(Y))]}
for M in (4, 48):
    V.store_embeddings(c, f'm{M}', Y, ymeta, progress=False, index=V.index_spec('HNSW', M, 64))
    d = np.array([[h['distance'] for h in hs] for hs in V.search(c, f'm{M}', Q, 10, ef=8)])
    out[f'm{M}'] = float((d <= kth * (1 + 1e-4) + 1e-6).mean())
try: V.store_embeddings(Resend(c), 'r', X, meta, progress=False)
except Exception as e: out['resend'] = f'{type(e).__name__}: {e}'
else: out['resend'] = dict(count=V.count(c, 'r'), first=V.search(c, 'r', X[7], 1)[0][0]['id'])
print(json.dumps(out))
'''

def test_index_spec_is_built_and_a_resent_create_index_is_harmless(tmp_path):
    (tmp_path/'params.yaml').write_text('project: {}\n')
    r = json.loads(py(CODE, tmp_path, timeout=600).stdout.strip().splitlines()[-1])
    assert r['h']['index_type'] == 'HNSW', r   # (Milvus Lite's describe_index does not report M)
    assert r['f']['index_type'] == 'FLAT' and r['f']['recall'] == 1.0, r
    assert r['h']['recall'] >= 0.97, r
    assert r['resend'] == dict(count=3000, first='7'), r
    assert r['m48'] > r['m4'] + 0.15, r
