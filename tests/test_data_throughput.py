"""The ingest speed-ups keep the guarantees (issue 8.6): duplicate ids are found across many chunks exactly as a plain
dict of first rows finds them (the id index is a set of sorted runs now), the read-ahead thread passes errors on and
ends with the read, the splits are written in parallel threads with the fingerprint of `fingerprint(split_dataset(...))`
whatever the id order, and the per-row min/max range check flags the same cells as a cell-by-cell check."""
import threading
import numpy as np, pandas as pd, pytest
from mlops_workbench.data import (Schema, ingest_stream, validate_rows, split_dataset, fingerprint, save_split,
                                  split_positions, load_prepared, DataFileError, _SeenIds, _read_ahead)

def test_seen_ids_match_a_dict_across_many_chunks():
    import pyarrow as pa
    rng = np.random.default_rng(1)
    ids = rng.integers(-50_000, 50_000, 40_000).astype(str).tolist()
    ids[100:110] = ['007', 'a', 'b', 'a', '+3', '3', '007', '-0', '0', '']   # non-canonical text ids, a missing one
    seen, ref, row0 = _SeenIds(), {}, 0
    for size in [1, 7, 500, 3, 4000, 9000, 26489]:   # chunks of uneven sizes: runs of every size get merged
        part = ids[row0:row0 + size]
        missing = np.array([t == '' for t in part])
        got = seen.first_rows(pa.array(part), missing, row0)
        want = []
        for i, t in enumerate(part):
            if t == '': want.append(0); continue
            f = ref.setdefault(t, row0 + i + 1)
            want.append(f if f != row0 + i + 1 else 0)
        assert got.tolist() == want
        row0 += size
    assert row0 == len(ids) and len(seen.runs) <= 6   # a few runs, not one per chunk
    assert all((np.diff(r) > 0).all() for r, _ in seen.runs)

def test_read_ahead_passes_errors_on_and_ends_its_thread():
    def gen():
        yield 1
        yield 2
        raise DataFileError('d.csv: malformed CSV: boom')
    before = threading.active_count()
    got = []
    with pytest.raises(DataFileError, match='boom'):
        for x in _read_ahead(gen()): got.append(x)
    assert got == [1, 2]
    closed = []
    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally: closed.append(True)
    it = _read_ahead(endless())
    assert [next(it) for _ in range(5)] == [0, 1, 2, 3, 4]
    it.close()   # the consumer stops early (e.g. a file-level error): the reader thread stops and closes the source
    assert closed == [True] and threading.active_count() == before
    assert list(_read_ahead(iter([]))) == []

@pytest.mark.parametrize('order', ['ascending', 'shuffled', 'text'])
def test_parallel_save_split_keeps_the_fingerprint(tmp_path, order):
    rng = np.random.default_rng(0)
    n = 5_000
    ids = np.arange(n) * 3 if order == 'ascending' else rng.permutation(n) * 3
    df = pd.DataFrame(rng.integers(0, 17, (n, 8)).astype('float32'), columns=[f'p{j}' for j in range(8)])
    df.insert(0, 'label', (np.arange(n) % 4).astype('int64'))
    df.insert(0, 'id', ids.astype(str) if order == 'text' else ids.astype('int64'))
    pos = split_positions(df['label'].to_numpy(), df['id'].to_numpy(), seed=3)
    for k, v in pos.items():   # each split in id order
        s = df['id'].to_numpy()[v]
        assert (s[:-1] < s[1:]).all(), k
    meta = save_split(df, pos, dict(classes=[0, 1, 2, 3]), tmp_path/'prepared', chunk_rows=700)
    splits = split_dataset(df, seed=3)
    assert meta['fingerprint'] == fingerprint(splits)
    back, _ = load_prepared(tmp_path/'prepared')
    for k in splits: pd.testing.assert_frame_equal(back[k], splits[k])

@pytest.mark.parametrize('lo,hi', [(-np.inf, np.inf), (0, 16), (0, np.inf), (-np.inf, 16)])
def test_row_range_check_flags_each_bad_cell(lo, hi):
    rng = np.random.default_rng(2)
    cells = np.array(['1', 'inf', '-inf', 'nan', '17', '-1', '16', '0', '1e400', '-1e400', '3.5'])
    grid = rng.choice(cells, (400, 5), p=[0.6] + [0.04] * 10)
    df = pd.DataFrame(grid, columns=[f'f{j}' for j in range(5)])
    df.insert(0, 'label', ['a', 'b'] * 200)
    df.insert(0, 'id', [str(i) for i in range(400)])
    clean, rej = validate_rows(df, Schema(min_value=lo, max_value=hi))
    v = grid.astype(float)
    good = np.isfinite(v) & (v >= lo) & (v <= hi)
    assert sorted(rej['_row'].tolist()) == (np.flatnonzero(~good.all(1)) + 1).tolist()
    for r, reason in zip(rej['_row'], rej['_reason']):   # every bad cell of the row is named, in column order
        assert [p.split(':')[0] for p in reason.split('; ')] == [f'f{j}' for j in np.flatnonzero(~good[r - 1])]
    assert len(clean) == int(good.all(1).sum())

def test_streamed_csv_with_duplicate_ids_far_apart(tmp_path):
    rows = [f"{i},{i % 2},{i % 17}" for i in range(3_000)] + ['5,1,1', '2999,0,2', '3000,1,3']
    (tmp_path/'d.csv').write_text('id,label,f\n' + '\n'.join(rows) + '\n')
    r = ingest_stream('d.csv', Schema(min_value=0, max_value=16), tmp_path, chunk_rows=64)
    assert r.rejected['_row'].tolist() == [3001, 3002]
    assert r.rejected['_reason'].tolist() == ["id: duplicate id '5' (first at row 6)",
                                              "id: duplicate id '2999' (first at row 3000)"]
    assert len(r.clean) == 3_001 and r.clean['id'].iloc[-1] == 3000

def test_canonical_int_ids_fast_path_agrees_with_the_pattern():
    import re, pyarrow as pa
    from mlops_workbench.data import _INT_ID
    ids = ['0', '-0', '007', '3', '-12', '9223372036854775807', '-9223372036854775808', '123456789012345678',
           '999999999999999999', '1000000000000000000', '-999999999999999999', '-1000000000000000000']
    for part in (ids, [i for i in ids if i.lstrip('-').isdigit()]):   # the whole-number fast path and the other
        s = _SeenIds()
        assert s.first_rows(pa.array(part), np.zeros(len(part), bool), 0).tolist() == [0] * len(part)
        assert sorted(s.text) == sorted(t for t in part if not re.fullmatch(_INT_ID, t))
        again = s.first_rows(pa.array(part), np.zeros(len(part), bool), len(part))
        assert again.tolist() == list(range(1, len(part) + 1))   # each seen before, at its first row

def test_threaded_column_parse_of_a_large_chunk_equals_small_chunks(tmp_path):
    rng = np.random.default_rng(4)
    n, f = 17_000, 64   # one chunk of > 2**20 cells: its columns are parsed in two threads
    X = rng.integers(0, 17, (n, f)).astype(str)
    X[rng.integers(0, n, 30), rng.integers(0, f, 30)] = rng.choice(['x', '', '17', '-1', 'nan', '1e400'], 30)
    rows = [f"{i},{i % 5}," + ','.join(x) for i, x in enumerate(X)]
    (tmp_path/'d.csv').write_text('id,label,' + ','.join(f'p{j}' for j in range(f)) + '\n' + '\n'.join(rows) + '\n')
    s = Schema(min_value=0, max_value=16)
    a = ingest_stream('d.csv', s, tmp_path, chunk_rows=100_000)
    b = ingest_stream('d.csv', s, tmp_path, chunk_rows=1_000)
    assert 0 < a.n_rejected <= 30
    pd.testing.assert_frame_equal(a.clean, b.clean)
    pd.testing.assert_frame_equal(a.rejected, b.rejected)
