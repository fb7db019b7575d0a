"""The embed stage at 10x the digits (issue 13.1): it used to ask for 21.6 GiB at 18k rows (a search on an unindexed,
already-loaded segment built a queries x vectors x width array). Real papermill stages on a scratch copy: prepare a
10x tiled digits CSV, train one small epoch, embed; the peak memory of the embed stage's whole process tree stays
bounded, every row is stored and indexed with the index params.yaml states, and the neighbours still mostly
share the label."""
import json, subprocess, time
import numpy as np, pandas as pd, psutil
from conftest import py, sh, set_params, clean_env

PX = [f'px_{r}_{c}' for r in range(8) for c in range(8)]
LIMIT = 3 * 2**30   # the stage's kernel imports torch, MLflow and pymilvus (~1 GiB); 21.6 GiB before the fix

def peak_rss(cmd, cwd, timeout=1200) -> tuple: # (exit code, peak RSS of the process tree in bytes, output)
    p = subprocess.Popen(cmd, cwd=cwd, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proc, peak, t0 = psutil.Process(p.pid), 0, time.monotonic()
    while p.poll() is None:
        try: peak = max(peak, sum(q.memory_info().rss for q in [proc] + proc.children(recursive=True)))
        except psutil.Error: pass
        if time.monotonic() - t0 > timeout:
            p.kill()
            raise AssertionError(f'{cmd} still running after {timeout}s')
        time.sleep(0.05)
    return p.returncode, peak, p.stdout.read()

def test_embed_stage_at_10x_digits_has_bounded_memory(scratch):
    from sklearn.datasets import load_digits
    d = load_digits()
    n = 10 * len(d.data)
    df = pd.DataFrame(np.tile(d.data.astype(int), (10, 1)), columns=PX)
    df.insert(0, 'label', np.tile(d.target, 10))
    df.insert(0, 'id', np.arange(n))
    (scratch/'data'/'raw').mkdir(parents=True, exist_ok=True)
    df.to_csv(scratch/'data'/'raw'/'digits10.csv', index=False)
    set_params(scratch, prepare={'source': 'data/raw/digits10.csv'}, train={'use_sweep': False, 'epochs': 1})
    sh(['mlwb', 'stage', 'prepare', '--no-progress'], scratch)
    sh(['mlwb', 'stage', 'train', '--no-progress'], scratch, timeout=1200)
    rc, peak, out = peak_rss(['mlwb', 'stage', 'embed', '--no-progress'], scratch)
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
