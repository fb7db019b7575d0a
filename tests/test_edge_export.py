"""Edge export (issue 11.1, 11.2): `mlwb export` proves ONNX parity on the held-out split and logs it to the version's
MLflow run; a proof that fails exits non-zero with no folder; `mlwb edge keygen|publish|status` on the pipeline's champion."""
import json, stat
from conftest import sh, clean_env, set_params, workbench, roles

def version(root, ver: str):
    "The model version `ver` and the MLflow client that read it."
    from mlops_workbench.tracking import get_client
    cfg = workbench(root); c = get_client(cfg)
    return c.get_model_version(cfg.model_name, ver), c

def test_export_champion_proves_parity_and_logs_it(project):
    r = sh(['mlwb', 'export', '--alias', 'champion', '--int8'], project)
    assert 'parity passed on' in r.stdout and 'argmax identical' in r.stdout and 'int8: accuracy' in r.stdout, r.stdout
    ver = str(roles(project)['champion'])
    out = project/'edge'/'exports'/f'v{ver}'
    assert sorted(p.name for p in out.iterdir()) == ['export.json', 'int8.json', 'model.int8.onnx', 'model.onnx', 'parity.json', 'smoke.json']
    q = json.loads((out/'int8.json').read_text())
    assert q['bytes_int8'] < q['bytes_fp32'] and q['same_class'] > 0.9, q
    print(f"int8: {q}")
    rep = json.loads((out/'parity.json').read_text())
    meta = json.loads((project/'data'/'prepared'/'meta.json').read_text())
    assert rep['passed'] and rep['argmax_mismatches'] == 0 and rep['n'] == meta['counts']['test']
    assert rep['max_abs_diff'] <= rep['tolerance'] == 1e-4 and rep['split'] == 'test' and rep['opset'] == 17
    assert rep['latency']['single_ms_onnx'] > 0 and rep['latency']['single_ms_torch'] > 0
    print(f"parity: max |dp| {rep['max_abs_diff']:.2e} on {rep['n']} rows; latency {rep['latency']}")
    rec = json.loads((out/'export.json').read_text())
    assert rec['version'] == int(ver) and rec['data_fingerprint'] == meta['fingerprint'] and rec['input_schema']['features'] == meta['features']
    # the ONNX file and the report are on the version's run, the version is tagged
    mv, c = version(project, ver)
    assert sorted(a.path for a in c.list_artifacts(mv.run_id, 'onnx')) == ['onnx/int8.json', 'onnx/model.int8.onnx', 'onnx/model.onnx', 'onnx/parity.json']
    assert (mv.tags['mlwb.onnx.parity'], mv.tags['mlwb.onnx.opset']) == ('passed', '17')
    assert 'onnx.single_ms_onnx' in c.get_run(mv.run_id).data.metrics

def test_failed_parity_exits_nonzero_with_no_folder(project):
    params = (project/'params.yaml').read_text()
    ver = str(roles(project)['champion'])
    try:
        set_params(project, export={'tolerance': 1e-15})
        r = sh(['mlwb', 'export', '--version', ver], project, check=False, env=clean_env(PYTHONWARNINGS='ignore'))
    finally: (project/'params.yaml').write_text(params)
    assert r.returncode == 1 and 'ONNX parity failed' in r.stderr and 'no bundle written' in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not [p for p in (project/'edge'/'exports').iterdir() if p.name.startswith('.tmp')]
    assert version(project, ver)[0].tags['mlwb.onnx.parity'] == 'failed'
    sh(['mlwb', 'export', '--version', ver], project)   # the next good export tags it passed again

def test_keygen_publish_status(project, tmp_path):
    key = tmp_path/'keys'/'edge.key'
    env = clean_env(MLWB_EDGE_KEY=str(key))
    r = sh(['mlwb', 'edge', 'keygen'], project, env=env)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and 'public key:' in r.stdout
    assert sh(['mlwb', 'edge', 'keygen'], project, check=False, env=env).returncode == 1   # never overwritten silently
    inside = sh(['mlwb', 'edge', 'keygen'], project, check=False, env=clean_env(MLWB_EDGE_KEY=str(project/'k.key')))
    assert inside.returncode == 1 and 'outside any repository' in inside.stderr and not (project/'k.key').exists()
    r = sh(['mlwb', 'edge', 'publish', '--alias', 'champion'], project, env=env)
    assert 'as sequence 1' in r.stdout, r.stdout
    ch = project/'edge'/'channel'
    head = json.loads((ch/'LATEST.json').read_text())
    assert head['sequence'] == 1 and (ch/'bundles'/'000001'/'manifest.sig').is_file()
    # no key material anywhere in the project: not in git's view, params, the channel or MLflow's artifacts
    secret = key.read_text().splitlines()[1]
    for p in project.rglob('*'):
        if p.is_file() and p.stat().st_size < 5_000_000: assert secret.encode() not in p.read_bytes(), p
    assert '/edge/' in (project/'.gitignore').read_text()
    r = sh(['mlwb', 'edge', 'status'], project, env=env)
    assert r.stdout.startswith('channel: sequence 1') and 'no device has reported yet' in r.stdout
    assert sh(['mlwb', 'edge', 'publish', '--alias', 'champion'], project, env=env).stdout.count('as sequence 2') == 1

def test_promote_publishes_when_asked(project, tmp_path):
    env = clean_env(MLWB_EDGE_KEY=str(tmp_path/'keys'/'edge.key'))
    sh(['mlwb', 'edge', 'keygen'], project, env=env)
    ver = str(roles(project)['champion'])
    params = (project/'params.yaml').read_text()
    try:
        r = sh(['mlwb', 'promote', ver, '--reason', 'no change'], project, env=env)
        assert 'edge: published' not in r.stdout and not (project/'edge'/'auto').exists()   # off by default
        set_params(project, export={'publish_on_promote': True, 'channel': 'edge/auto'})
        r = sh(['mlwb', 'promote', ver, '--reason', 'keep the devices on the champion'], project, env=env)
        assert f'edge: published version {ver} as sequence 1' in r.stdout, r.stdout
        r = sh(['mlwb', 'promote', ver, '--reason', 'again'], project, env=env)   # the channel has it: nothing more
        assert 'edge: published' not in r.stdout
        assert json.loads((project/'edge'/'auto'/'LATEST.json').read_text())['sequence'] == 1
    finally: (project/'params.yaml').write_text(params)
