"""The prepare stage reads its source in chunks (`prepare.chunk_rows`): run the real stage (papermill kernel, stage
runner) on a file of several chunks and check that its splits, fingerprint and quarantine are exactly those of the
whole file read in memory; that excluded columns never reach the quarantine; and that a refused file leaves the
earlier results."""
import gzip, hashlib, json
import numpy as np, pandas as pd, pytest
from conftest import sh, set_params

PX = [f'px_{r}_{c}' for r in range(8) for c in range(8)]

def digits_text(n_copies=3) -> pd.DataFrame:
    "The digits repeated, as text, with string ids and a personal column that is not a feature."
    from sklearn.datasets import load_digits
    d = load_digits()
    df = pd.DataFrame(np.tile(d.data.astype(int), (n_copies, 1)), columns=PX).astype(str)
    df.insert(0, 'label', np.tile(d.target, n_copies).astype(str))
    df.insert(0, 'id', [f'img-{i:05d}' for i in range(len(df))])
    df['email'] = [f'person{i}@example.org' for i in range(len(df))]
    return df

def bad_rows(df):
    "Row-level problems spread over several chunks, among them duplicates whose first row is chunks earlier."
    df.loc[10, 'px_0_3'] = 'oops'
    df.loc[700, 'px_4_4'] = '99'
    df.loc[1500, 'label'] = '12'
    df.loc[2200, 'px_7_7'] = ''
    df.loc[3000, 'id'] = 'img-00004'        # first at row 5, five chunks earlier
    df.loc[4000, 'id'] = df.loc[3999, 'id']  # duplicate inside one chunk
    df.loc[5300, 'px_1_1'] = 'inf'
    return df

def files_of(root):
    return {p.relative_to(root): hashlib.sha256(p.read_bytes()).hexdigest()
            for d in ('data/prepared', 'data/quarantine', 'metrics')
            for p in sorted((root/d).rglob('*')) if p.is_file()}

def test_stage_in_chunks_equals_the_whole_file_in_memory(scratch):
    from mlops_workbench.data import Schema, read_table, validate_rows, split_dataset, fingerprint, write_quarantine
    df = bad_rows(digits_text())
    raw = scratch/'data'/'raw'/'big.csv'
    raw.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(raw, index=False)
    set_params(scratch, prepare={'source': 'data/raw/big.csv', 'features': PX, 'chunk_rows': 500})
    sh(['mlwb', 'stage', 'prepare', '--no-progress'], scratch)

    # the in-memory path: the whole file in one frame, validated in one piece, split with train_test_split on frames
    schema = Schema(label='label', features=PX, id_col='id', min_value=0, max_value=16, labels=list(range(10)),
                    image_shape=[8, 8])
    clean, rej = validate_rows(read_table(raw), schema, 'data/raw/big.csv')
    splits = split_dataset(clean, 0.2, 0.1, 42)
    meta = json.loads((scratch/'data'/'prepared'/'meta.json').read_text())
    assert meta['fingerprint'] == fingerprint(splits)
    for k, v in splits.items():
        pd.testing.assert_frame_equal(pd.read_parquet(scratch/'data'/'prepared'/f'{k}.parquet'), v)
    q = pd.read_csv(scratch/'data'/'quarantine'/'rejected.csv', dtype=str, keep_default_na=False)
    mem = pd.read_csv(write_quarantine(rej, scratch/'mem'), dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(q, mem)
    assert q['_row'].tolist() == ['11', '701', '1501', '2201', '3001', '4001', '5301']
    assert "duplicate id 'img-00004' (first at row 5)" in q['_reason'].iloc[4]
    # the personal column was never read: not in the quarantine, the prepared data or the executed report
    assert 'email' not in q.columns and 'example.org' not in (scratch/'data'/'quarantine'/'rejected.csv').read_text()
    assert all('email' not in pd.read_parquet(p).columns for p in (scratch/'data'/'prepared').glob('*.parquet'))
    assert 'example.org' not in (scratch/'reports'/'prepare.ipynb').read_text()
    m = json.loads((scratch/'metrics'/'prepare.json').read_text())
    assert (m['rows'], m['valid'], m['rejected']) == (len(df), len(df) - 7, 7)

@pytest.mark.parametrize('case', ['extra column', 'gzip', 'one class', 'tiny class'])
def test_refused_file_names_file_and_field_and_leaves_earlier_results(scratch, case):
    raw = scratch/'data'/'raw'
    raw.mkdir(parents=True, exist_ok=True)
    df = digits_text(1).drop(columns='email')
    df.loc[5, 'px_0_3'] = 'oops'   # one quarantined row, so the earlier quarantine file is not header-only
    df.to_csv(raw/'good.csv', index=False)
    set_params(scratch, prepare={'source': 'data/raw/good.csv', 'chunk_rows': 400})
    sh(['mlwb', 'stage', 'prepare', '--no-progress'], scratch)
    before = files_of(scratch)
    if case == 'extra column':
        df.assign(income='52000').to_csv(raw/'bad.csv', index=False)
        msg = "data/raw/bad.csv: field 'features': 65 feature columns, but image_shape [8, 8] needs 64"
    elif case == 'gzip':
        (raw/'bad.csv').write_bytes(gzip.compress(df.to_csv(index=False).encode()))
        msg = 'data/raw/bad.csv: file is gzip-compressed, not CSV text'
    elif case == 'tiny class':   # one digit only twice: no stratified split (checked before the quarantine moves)
        pd.concat([df[df['label'] != '7'], df[df['label'] == '7'].head(2)]).to_csv(raw/'bad.csv', index=False)
        msg = "label '7' has only 2 row(s); a stratified split needs at least 3 per label"
    else:
        df[df['label'] == '7'].to_csv(raw/'bad.csv', index=False)
        msg = "data/raw/bad.csv: field 'label': 1 class(es) [7] in 179 valid rows; a classifier needs at least 2"
    set_params(scratch, prepare={'source': 'data/raw/bad.csv'})
    r = sh(['mlwb', 'stage', 'prepare', '--no-progress'], scratch, check=False)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert msg in last, last
    assert files_of(scratch) == before                     # prepared data, quarantine and metrics as they were
    assert not [p for p in scratch.rglob('.tmp-*') if '.git' not in p.parts and '.dvc' not in p.parts]
