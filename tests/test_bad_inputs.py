"""Malformed inputs: each file-level problem stops with a one-line error naming the file (and line where it has one);
each row-level problem sends the row to quarantine with its row number, column and reason."""
import pandas as pd, numpy as np, pytest
from mlops_workbench.data import DataFileError, Schema, ingest, write_quarantine, split_dataset

SCHEMA = Schema(label='label', features=['a', 'b'], id_col='id', min_value=0, max_value=10, labels=[0, 1])
GOOD = ['1,0,1,2', '2,1,3,4', '3,0,5,6', '4,1,7,8', '5,0,1,1', '6,1,2,2', '7,0,3,3', '8,1,4,4', '9,0,5,5', '10,1,6,6',
        '11,0,1,2', '12,1,2,3', '13,0,3,4', '14,1,4,5', '15,0,5,6', '16,1,6,7', '17,0,7,8', '18,1,8,9', '19,0,9,9', '20,1,1,1']

def csv(tmp_path, body, name='data.csv', header='id,label,a,b', encoding='utf-8'):
    p = tmp_path/name
    p.write_bytes(((header + '\n' if header is not None else '') + body).encode(encoding))
    return p

# ---- file-level: (name, writer, expected message) -------------------------------------------------------------
FILE_CASES = {
    'missing':          (lambda t: t/'nope.csv', 'nope.csv: file not found'),
    'empty':            (lambda t: csv(t, '', header=None), 'data.csv: file is empty'),
    'whitespace only':  (lambda t: csv(t, '\n  \n', header=None), 'data.csv: file is empty'),
    'header only':      (lambda t: csv(t, ''), 'data.csv: has a header but no data rows'),
    'missing column':   (lambda t: csv(t, '1,0,1', header='id,label,a'), "data.csv: missing column(s) ['b']"),
    'renamed label':    (lambda t: csv(t, '1,0,1,2', header='id,target,a,b'), "missing column(s) ['label']"),
    'latin-1 encoding': (lambda t: csv(t, '1,0,1,2\n2,1,caf\xe9,3\n', encoding='latin-1'), 'data.csv: line 3: not UTF-8 text (byte 0xe9'),
    'semicolons':       (lambda t: csv(t, '1;0;1;2\n', header='id;label;a;b'), "looks ';'-delimited but prepare.delimiter is ','"),
    'tabs':             (lambda t: csv(t, '1\t0\t1\t2\n', header='id\tlabel\ta\tb'), "looks '\\t'-delimited"),
    'ragged row':       (lambda t: csv(t, '1,0,1,2\n2,1,3,4,5,6\n'), 'data.csv: malformed CSV: line 3 has 6 fields, the header 4'),
    'duplicate header': (lambda t: csv(t, '1,0,1,2\n', header='id,label,a,a'), "data.csv: duplicate column name(s) ['a']"),
    'corrupt parquet':  (lambda t: (t/'d.parquet').write_bytes(b'PAR1garbage') and t/'d.parquet', 'd.parquet: not a readable Parquet file'),
    'empty parquet':    (lambda t: (t/'d.parquet').write_bytes(b'') or t/'d.parquet', 'd.parquet: file is empty'),
    'unsupported type': (lambda t: (t/'d.xlsx').write_bytes(b'PK') and t/'d.xlsx', "d.xlsx: unsupported file type '.xlsx'"),
    'a folder':         (lambda t: (t/'dir.csv').mkdir() or t/'dir.csv', 'dir.csv: is a folder'),
    'too many bad rows':(lambda t: csv(t, '\n'.join(GOOD[:5] + ['6,0,x,1', '7,0,y,1'])), "data.csv: 2 of 7 rows rejected (more than 10%); first: row 6, column 'a': not a number: 'x'"),
}

@pytest.mark.parametrize('case', FILE_CASES)
def test_file_level_errors(tmp_path, case):
    make, msg = FILE_CASES[case]
    path = make(tmp_path)
    with pytest.raises(DataFileError) as e: ingest(str(path), SCHEMA, tmp_path)
    assert msg in str(e.value), str(e.value)
    assert '\n' not in str(e.value)   # one line

# ---- row-level: (bad row, expected (row, column, reason)) ---------------------------------------------------------
ROW_CASES = {
    'empty cell':       ('21,0,,3',     'a', 'missing value'),
    'NaN':              ('21,0,nan,3',  'a', 'missing value'),
    'not a number':     ('21,0,abc,3',  'a', "not a number: 'abc'"),
    'infinite':         ('21,0,inf,3',  'a', 'not a finite number'),
    'above range':      ('21,0,1,11',   'b', 'value 11 outside [0, 10]'),
    'below range':      ('21,0,-1,1',   'a', 'value -1 outside [0, 10]'),
    'unknown label':    ('21,7,1,1',    'label', "unknown label '7'"),
    'missing label':    ('21,,1,1',     'label', 'missing label'),
    'duplicate id':     ('3,1,1,1',     'id', "duplicate id '3' (first at row 3)"),
    'missing id':       (',1,1,1',      'id', 'missing id'),
}

@pytest.mark.parametrize('case', ROW_CASES)
def test_row_level_quarantine(tmp_path, case):
    bad, col, reason = ROW_CASES[case]
    rows = GOOD[:10] + [bad] + GOOD[10:]          # the bad row is data row 11 (file line 12)
    clean, rej, _ = ingest(str(csv(tmp_path, '\n'.join(rows))), SCHEMA, tmp_path)
    assert len(clean) == 20 and len(rej) == 1
    r = rej.iloc[0]
    assert (r['_file'], r['_row'], r['_column']) == (str(tmp_path/'data.csv'), 11, col)
    assert reason in r['_reason'], r['_reason']
    q = write_quarantine(rej, tmp_path/'quarantine')
    back = pd.read_csv(q, dtype=str, keep_default_na=False)
    assert back.loc[0, '_row'] == '11' and reason in back.loc[0, '_reason']
    assert back.loc[0, 'a'] == bad.split(',')[2]        # the original cells are kept as written

def test_several_problems_in_one_row_are_all_named(tmp_path):
    clean, rej, _ = ingest(str(csv(tmp_path, '\n'.join(GOOD + ['21,9,x,99']))), SCHEMA, tmp_path)
    reason = rej.iloc[0]['_reason']
    assert "a: not a number: 'x'" in reason and 'b: value 99 outside' in reason and "label: unknown label '9'" in reason

def test_parquet_rows_are_validated_too(tmp_path):
    df = pd.DataFrame({'id': range(1, 22), 'label': [0, 1]*10 + [1], 'a': [1.0]*20 + [np.nan], 'b': [2.0]*21})
    df.to_parquet(tmp_path/'d.parquet')
    clean, rej, _ = ingest(str(tmp_path/'d.parquet'), SCHEMA, tmp_path)
    assert len(clean) == 20 and rej.iloc[0]['_row'] == 21 and rej.iloc[0]['_column'] == 'a'

def test_other_delimiter_when_configured(tmp_path):
    p = csv(tmp_path, '\n'.join(r.replace(',', ';') for r in GOOD), header='id;label;a;b')
    clean, rej, _ = ingest(str(p), SCHEMA, tmp_path, delimiter=';')
    assert len(clean) == 20 and clean['label'].tolist()[:2] == [0, 1]

def test_too_few_rows_per_label_for_a_stratified_split(tmp_path):
    clean, _, _ = ingest(str(csv(tmp_path, '\n'.join(GOOD[:19] + ['21,1,1,1']))), Schema(label='label', features=['a', 'b']), tmp_path)
    with pytest.raises(ValueError, match='stratified split needs at least 3'):
        split_dataset(clean[clean['label'] == 0].assign(label=[0]*9 + [1]))
