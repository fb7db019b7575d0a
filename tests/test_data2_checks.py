"""The bulk range/finiteness check of `RowValidator.add` (two passes instead of five) gives the same reasons for every
kind of odd cell under each combination of bounds, and a CSV read in small Arrow blocks regrouped into chunks gives the
same result as one chunk."""
import numpy as np, pandas as pd, pytest
from mlops_workbench.data import Schema, validate_rows, ingest_stream

CELLS = ['1', 'inf', '-inf', 'nan', '-nan', '1e400', '17', '-1', 'x', '16', '0', '']

def reasons(lo, hi):
    df = pd.DataFrame({'id': [str(i) for i in range(len(CELLS))], 'label': ['a', 'b'] * (len(CELLS) // 2),
                       'f': CELLS, 'g': ['2'] * len(CELLS)})
    _, rej = validate_rows(df, Schema(min_value=lo, max_value=hi))
    return dict(zip(rej['_row'].tolist(), rej['_reason'].tolist()))

NF, MISS = 'f: not a finite number', 'f: missing value'

@pytest.mark.parametrize('lo,hi,out', [
    (-np.inf, np.inf, {}),
    (0, 16, {7: 'f: value 17 outside [0, 16]', 8: 'f: value -1 outside [0, 16]'}),
    (0, np.inf, {8: 'f: value -1 outside [0, inf]'}),
    (-np.inf, 16, {7: 'f: value 17 outside [-inf, 16]'}),
])
def test_bounds_reasons(lo, hi, out):
    common = {2: NF, 3: NF, 4: MISS, 5: "f: not a number: '-nan'", 6: NF, 9: "f: not a number: 'x'", 12: MISS}
    assert reasons(lo, hi) == {**common, **out}

def test_small_blocks_regrouped(tmp_path):
    rng = np.random.default_rng(0)
    n = 30_000
    X = rng.integers(0, 17, (n, 20))
    rows = [f"{i},{i % 3}," + ','.join(map(str, x)) for i, x in enumerate(X)]
    rows[12_345] = rows[12_345].rsplit(',', 1)[0] + ',x'
    (tmp_path/'d.csv').write_text('id,label,' + ','.join(f'p{j}' for j in range(20)) + '\n' + '\n'.join(rows) + '\n')
    s = Schema(min_value=0, max_value=16)
    a = ingest_stream('d.csv', s, tmp_path, chunk_rows=100_000)   # Arrow blocks of 4 MB max, one chunk
    b = ingest_stream('d.csv', s, tmp_path, chunk_rows=50)   # many chunks
    pd.testing.assert_frame_equal(a.clean, b.clean)
    pd.testing.assert_frame_equal(a.rejected, b.rejected)
    assert a.n_rejected == 1 and a.rejected['_row'].tolist() == [12_346]
