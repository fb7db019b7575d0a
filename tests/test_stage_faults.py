"""Faults through the real stage runner: bad input files, quarantined rows, a busy Milvus Lite directory (a killed `dvc
repro`: tests/test_retrain.py)."""
import json, os, signal, socket, subprocess, sys, time
import pandas as pd, psutil
from conftest import sh, set_params, clean_env
from testkit import free_port

def tmp_files(root):
    return [p for p in root.rglob('.tmp-*') if '.git' not in p.parts and '.dvc' not in p.parts]

def digits_csv(path, bad_rows=()):
    from sklearn.datasets import load_digits
    d = load_digits(); df = pd.DataFrame(d.data.astype(int), columns=[f'px_{i//8}_{i%8}' for i in range(64)])
    df.insert(0, 'label', d.target); df.insert(0, 'id', [f'img-{i:04d}' for i in range(len(df))])
    df = df.astype(str)
    for i, col, val in bad_rows: df.loc[i, col] = val
    path.parent.mkdir(parents=True, exist_ok=True); df.to_csv(path, index=False)
    return df

def test_bad_file_fails_the_stage_with_one_line_and_no_output(scratch):
    (scratch/'data'/'raw'/'bad.csv').write_text('id;label;px\n1;0;3\n')
    set_params(scratch, prepare={'source': 'data/raw/bad.csv'})
    r = sh(['mlwb', 'stage', 'prepare', '--no-progress'], scratch, check=False)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith('mlwb: error: stage prepare failed in cell')
    assert "DataFileError: data/raw/bad.csv: found a single column; the file looks ';'-delimited" in last
    assert not (scratch/'data'/'prepared').exists() and not (scratch/'reports'/'prepare.ipynb').exists()
    assert (scratch/'reports'/'failed'/'prepare.ipynb').exists() and not tmp_files(scratch)
    r = sh(['dvc', 'repro', 'prepare'], scratch, check=False)   # through DVC: non-zero too, and nothing recorded
    assert r.returncode != 0 and not (scratch/'dvc.lock').exists()

def test_own_csv_with_bad_rows_is_prepared_and_quarantined(scratch):
    df = digits_csv(scratch/'data'/'raw'/'mine.csv', [(5, 'px_0_3', 'oops'), (17, 'px_4_4', '99'), (40, 'label', '12')])
    df.iloc[[3]].to_csv(scratch/'data'/'raw'/'mine.csv', mode='a', header=False, index=False)   # a duplicated id at the end
    set_params(scratch, prepare={'source': 'data/raw/mine.csv'})
    sh(['dvc', 'repro', 'prepare'], scratch)
    m = json.loads((scratch/'metrics'/'prepare.json').read_text())
    assert (m['rows'], m['valid'], m['rejected']) == (1798, 1794, 4)
    q = pd.read_csv(scratch/'data'/'quarantine'/'rejected.csv', dtype=str)
    assert q['_row'].tolist() == ['6', '18', '41', '1798']
    assert q['_column'].tolist() == ['px_0_3', 'px_4_4', 'label', 'id']
    assert "duplicate id 'img-0003' (first at row 4)" in q['_reason'].iloc[-1]
    prepared = pd.read_parquet(scratch/'data'/'prepared'/'train.parquet')
    assert pd.api.types.is_string_dtype(prepared['id']) and prepared['id'].str.startswith('img-').all()

def test_busy_milvus_lite_gives_a_clear_error_and_can_wait(project):
    # the holder keeps the directory until told (a line on its stdin; at most 300 s): no race with a busy machine
    hold = ('import signal, sys; from mlops_workbench.vectors import connect; connect(); print("ready", flush=True); '
            'signal.alarm(300); sys.stdin.readline()')
    holder = subprocess.Popen([sys.executable, '-c', hold], cwd=project, env=clean_env(), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'ready'
        r = sh(['mlwb', 'search', '--id', '0'], project, check=False)
        assert r.returncode == 1 and 'Traceback' not in r.stderr
        assert f'is open in process {holder.pid}' in r.stderr and 'mlwb milvus-server' in r.stderr and 'MILVUS_URI' in r.stderr
        waiting = subprocess.Popen(['mlwb', 'search', '--id', '0', '--wait', '120'], cwd=project, env=clean_env(),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(3)   # let it meet the busy directory (if it is slower, it simply finds it free)
        holder.stdin.write('\n')
        holder.stdin.flush()
        out, err = waiting.communicate(timeout=300)   # waits for the holder to exit, then answers
        assert holder.wait(60) == 0 and waiting.returncode == 0 and 'rank' in out, err
    finally:
        if holder.poll() is None: holder.kill()

def test_milvus_server_shares_the_directory(project):
    port = free_port()
    srv = subprocess.Popen(['mlwb', 'milvus-server', '--port', str(port)], cwd=project, env=clean_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        t0 = time.time()
        while time.time() - t0 < 60:
            with socket.socket() as s:
                if s.connect_ex(('127.0.0.1', port)) == 0: break
            time.sleep(0.3)
        env = clean_env(MILVUS_URI=f'http://127.0.0.1:{port}')
        procs = [subprocess.Popen(['mlwb', 'search', '--id', str(i), '--json'], cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (1, 2)]
        outs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        assert all(len(json.loads(o[0])) == 5 for o in outs)
        r = sh(['mlwb', 'search', '--id', '1'], project, check=False)   # the directory itself is held by the server
        assert r.returncode == 1 and 'milvus-server' in r.stderr
    finally:
        os.killpg(srv.pid, signal.SIGTERM); srv.wait(120)   # mlwb kills its server 90 s after SIGTERM at most
        lite = [p for p in psutil.process_iter(['cmdline']) if 'milvus-lite' in ' '.join(p.info['cmdline'] or []) and str(project) in ' '.join(p.info['cmdline'] or [])]
        assert not psutil.wait_procs(lite, timeout=30)[1], 'the milvus-lite server outlived mlwb milvus-server'

def test_stages_refuse_a_missing_or_foreign_kernel(scratch, tmp_path):
    spec = tmp_path/'jupyter'/'kernels'/'foreign'; spec.mkdir(parents=True)
    (spec/'kernel.json').write_text(json.dumps({'argv': ['/usr/bin/python3', '-m', 'ipykernel_launcher', '-f', '{connection_file}'],
                                                'display_name': 'someone else', 'language': 'python'}))
    r = sh(['mlwb', 'stage', 'prepare'], scratch, check=False, env=clean_env(JUPYTER_PATH=str(tmp_path/'jupyter'), MLWB_KERNEL='foreign'))
    assert r.returncode == 1 and "Jupyter kernel 'foreign' runs /usr/bin/python3, not this environment's" in r.stderr
    r = sh(['mlwb', 'stage', 'prepare'], scratch, check=False, env=clean_env(MLWB_KERNEL='no-such-kernel'))
    assert r.returncode == 1 and "Jupyter kernel 'no-such-kernel' is not installed; run `make install`" in r.stderr
    assert not (scratch/'reports'/'prepare.ipynb').exists()
