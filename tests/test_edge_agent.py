"""The device agent's refusals and faults (issue 11.4, 11.5): each bad bundle is refused with a clear logged reason and the
device keeps serving its previous model; a SIGKILL at every step of an update leaves one complete valid model."""
import json, os, shutil, signal, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
from conftest import sh, clean_env

AGENT = [sys.executable, '-c', 'import sys; from mlops_workbench.edge import main; sys.exit(main())']
FEATURES = ['a', 'b', 'c']

@pytest.fixture(scope='module')
def kit(tmp_path_factory):
    "Signing keys (trusted and another), exports of three tiny models: v1, v2, and v3 with a fourth input feature."
    import torch
    from mlops_workbench.export import keygen, load_signing_key, export_model
    from mlops_workbench.train import build_model, predict_proba
    d = tmp_path_factory.mktemp('edgekit')
    k, other = keygen(d/'keys'/'sign.key'), keygen(d/'keys'/'other.key')
    X = np.random.default_rng(0).normal(size=(60, 4)).astype('float32')
    info = dict(model_name='tiny', run_id='run-1', git_commit='c0', data_fingerprint='fp-1', classes=['x', 'y', 'z'])
    for v, n in ((1, 3), (2, 3), (3, 4)):
        torch.manual_seed(v)
        m = build_model('mlp', n, 3, hidden=[8]).eval()
        export_model(m, X[:, :n], predict_proba(m, X[:, :n]).argmax(1), d/f'v{v}', dict(info, version=v, features=FEATURES + ['d'][:n-3]),
                     latency_rows=3)
    return dict(dir=d, pub=Path(k['public']), key=load_signing_key(k['private']),
                other=load_signing_key(other['private']), X=X)

def setup(kit, tmp_path, **dev):
    "A channel holding v1 and a device on it; returns (channel, device)."
    from mlops_workbench.export import publish_export
    from mlops_workbench.edge import Device
    ch = tmp_path/'channel'
    publish_export(kit['dir']/'v1', ch, kit['key'])
    device = Device(tmp_path/'dev', kit['pub'], log=lambda line: None, **dev)
    assert device.check(ch) == 'updated' and device.pointer()['version'] == 1
    return ch, device

def refused(device, ch, reason):
    "The check refuses with `reason`; the device still serves version 1, and says why in its status and log."
    from mlops_workbench.edge import EdgeModel
    assert device.check(ch) == 'refused'
    st = json.loads((device.root/'status.json').read_text())
    assert reason in st['last_error'], st['last_error']
    assert st['version'] == 1 and device.pointer()['version'] == 1 and device.verify_slot(device.pointer()['slot'])['version'] == 1
    assert reason in (device.root/'agent.log').read_text()
    assert EdgeModel(device.root).predict(np.zeros((1, 3), np.float32))[0]['model_version'] == 1
    assert not list((device.root/'tmp').iterdir())   # the refused download is gone

def test_bad_signature(kit, tmp_path):
    from mlops_workbench.export import publish_export
    ch, dev = setup(kit, tmp_path)
    publish_export(kit['dir']/'v2', ch, kit['key'])
    mf = ch/'bundles'/'000002'/'manifest.json'
    mf.write_text(mf.read_text().replace('"run-1"', '"run-X"'))
    refused(dev, ch, 'bad signature: the manifest is not what the trusted key signed')

def test_wrong_key(kit, tmp_path):
    from mlops_workbench.export import publish_export
    ch, dev = setup(kit, tmp_path)
    publish_export(kit['dir']/'v2', ch, kit['other'])
    refused(dev, ch, 'wrong key: signed by key')

def test_tampered_onnx(kit, tmp_path):
    from mlops_workbench.export import publish_export
    ch, dev = setup(kit, tmp_path)
    publish_export(kit['dir']/'v2', ch, kit['key'])
    f = ch/'bundles'/'000002'/'model.onnx'
    b = bytearray(f.read_bytes())
    b[len(b) // 2] ^= 0xFF
    f.write_bytes(bytes(b))
    refused(dev, ch, 'model.onnx: sha256 differs from the signed manifest (tampered)')

def test_truncated_download(kit, tmp_path):
    from mlops_workbench.export import publish_export
    ch, dev = setup(kit, tmp_path)
    publish_export(kit['dir']/'v2', ch, kit['key'])
    f = ch/'bundles'/'000002'/'model.onnx'
    f.write_bytes(f.read_bytes()[:100])
    refused(dev, ch, 'truncated download?')
    assert dev.check(ch) == 'refused' and (dev.root/'agent.log').read_text().count('truncated') == 1   # logged once
    shutil.copyfile(kit['dir']/'v2'/'model.onnx', f)    # a transfer fault is retried at the next poll
    assert dev.check(ch) == 'updated' and dev.pointer()['version'] == 2

def test_manifest_names_a_missing_file(kit, tmp_path):
    from mlops_workbench.export import publish_export
    ch, dev = setup(kit, tmp_path)
    publish_export(kit['dir']/'v2', ch, kit['key'])
    (ch/'bundles'/'000002'/'smoke.json').unlink()
    refused(dev, ch, 'smoke.json: named by the manifest but missing from the channel')

def test_schema_change_only_when_asked(kit, tmp_path):
    from mlops_workbench.export import publish_export
    from mlops_workbench.edge import Device
    ch, dev = setup(kit, tmp_path)
    publish_export(kit['dir']/'v3', ch, kit['key'])
    refused(dev, ch, "input schema changes (3 -> 4 features; dropped [], added ['d'])")
    willing = Device(dev.root, kit['pub'], accept_schema_change=True, log=lambda line: None)
    assert willing.check(ch) == 'updated' and willing.manifest()['input_schema']['features'] == FEATURES + ['d']

def test_smoke_failure_keeps_the_previous_slot(kit, tmp_path):
    from mlops_workbench.export import publish_export, _sha256
    ch, dev = setup(kit, tmp_path)
    bad = tmp_path/'v2-bad'
    shutil.copytree(kit['dir']/'v2', bad)
    smoke = json.loads((bad/'smoke.json').read_text())
    smoke['proba'] = [p[1:] + p[:1] for p in smoke['proba']]   # expected outputs of another model: classes move
    (bad/'smoke.json').write_text(json.dumps(smoke))
    rec = json.loads((bad/'export.json').read_text())
    rec['files']['smoke.json'] = _sha256(bad/'smoke.json')
    (bad/'export.json').write_text(json.dumps(rec))
    publish_export(bad, ch, kit['key'])   # signed by the trusted key: only the smoke test can catch it
    refused(dev, ch, 'smoke test failed')
    assert dev.check(ch) == 'refused'     # remembered: not downloaded again on every poll

def test_replay_refused_unless_signed_rollback(kit, tmp_path):
    from mlops_workbench.export import publish_export
    ch, dev = setup(kit, tmp_path)
    publish_export(kit['dir']/'v2', ch, kit['key'])
    assert dev.check(ch) == 'updated' and dev.pointer()['version'] == 2
    old = json.loads((ch/'LATEST.json').read_text())
    (ch/'LATEST.json').write_text(json.dumps(dict(old, sequence=1, bundle='bundles/000001', version=1)))  # channel goes back
    assert dev.check(ch) == 'refused' and dev.pointer()['version'] == 2
    assert 'replay: sequence 1 is not newer than this device' in json.loads((dev.root/'status.json').read_text())['last_error']
    # a bundle of v1 re-signed under a new sequence but not marked as rollback is refused too
    (ch/'LATEST.json').write_text(json.dumps(old))
    from mlops_workbench.export import build_bundle
    build_bundle(kit['dir']/'v1', ch/'bundles'/'000003', kit['key'], 3, rollback=False)
    (ch/'LATEST.json').write_text(json.dumps(dict(old, sequence=3, bundle='bundles/000003', version=1)))
    assert dev.check(ch) == 'refused' and 'not a signed rollback' in dev.last_error
    publish_export(kit['dir']/'v1', ch, kit['key'], rollback=True)   # sequence 4, signed as a rollback
    assert dev.check(ch) == 'updated' and dev.pointer()['version'] == 1 and dev.manifest()['rollback']

def test_corrupted_active_slot_rolls_back_at_start(kit, tmp_path):
    from mlops_workbench.export import publish_export
    from mlops_workbench.edge import Device
    ch, dev = setup(kit, tmp_path)
    publish_export(kit['dir']/'v2', ch, kit['key'])
    assert dev.check(ch) == 'updated' and dev.pointer()['slot'] == 'b'
    f = dev.root/'slots'/'b'/'model.onnx'
    f.write_bytes(f.read_bytes()[:-10])   # the device's own copy is damaged
    again = Device(dev.root, kit['pub'], log=lambda line: None)
    ptr = again.recover()
    assert ptr['slot'] == 'a' and ptr['version'] == 1 and 'rolled back to slot a' in again.last_error

def _agent(ch, dev, kit, env=None, check=False):
    return sh([*AGENT, 'run', '--channel', str(ch), '--device', str(dev), '--trust', str(kit['pub']), '--once'], dev.parent,
              check=check, env=clean_env(**(env or {})), timeout=120)

@pytest.mark.parametrize('step', ['manifest', 'downloaded', 'verified', 'slot_written', 'pointer_written', 'swapped', 'status'])
def test_sigkill_at_every_step_leaves_one_valid_model(kit, tmp_path, step):
    from mlops_workbench.export import publish_export
    from mlops_workbench.edge import Device, EdgeModel
    ch, dev = setup(kit, tmp_path)
    publish_export(kit['dir']/'v2', ch, kit['key'])
    r = _agent(ch, dev.root, kit, {'MLWB_EDGE_CRASH_AT': step})
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    after = Device(dev.root, kit['pub'], log=lambda line: None)
    ptr = after.pointer()
    m = after.verify_slot(ptr['slot'])     # the pointer names one complete, verified bundle
    want = 1 if step in ('manifest', 'downloaded', 'verified', 'slot_written', 'pointer_written') else 2
    assert (m['version'], ptr['version']) == (want, want)
    assert EdgeModel(dev.root).predict(kit['X'][:1, :3])[0]['model_version'] == want
    r = _agent(ch, dev.root, kit, check=True)      # restarted: it recovers and finishes the update
    assert after.pointer()['version'] == 2 and after.verify_slot(after.pointer()['slot'])['version'] == 2
    assert not (dev.root/'tmp').exists() or not list((dev.root/'tmp').iterdir())
    assert json.loads((dev.root/'status.json').read_text())['sequence'] == 2

def test_agent_cli_predict_and_status(kit, tmp_path):
    ch, dev = setup(kit, tmp_path)
    (tmp_path/'in.csv').write_text('id,c,b,a\n1,0.5,0.1,0.2\n2,1,2,3\n')   # columns by name, any order
    r = sh([*AGENT, 'predict', '--device', str(dev.root), str(tmp_path/'in.csv')], tmp_path, env=clean_env())
    lines = r.stdout.strip().splitlines()
    assert lines[0] == 'id,prediction,probability,model_version,run_id,data_fingerprint,sequence' and len(lines) == 3
    assert lines[1].startswith('1,') and lines[1].endswith(',1,run-1,fp-1,1')
    from mlops_workbench.edge import EdgeModel
    want = EdgeModel(dev.root).predict(np.array([[0.2, 0.1, 0.5]], np.float32))[0]['prediction']
    assert lines[1].split(',')[1] == want
    (tmp_path/'bad.csv').write_text('id,a,b\n1,0,0\n')
    r = sh([*AGENT, 'predict', '--device', str(dev.root), str(tmp_path/'bad.csv')], tmp_path, check=False, env=clean_env())
    assert r.returncode == 1 and r.stderr.strip() == f"mlwb-edge: error: {tmp_path/'bad.csv'}: no column(s) c (the model takes 3 features)"
    r = sh([*AGENT, 'status', '--device', str(dev.root)], tmp_path, env=clean_env())
    assert json.loads(r.stdout)['version'] == 1
    r = _agent(ch, tmp_path/'fresh', dict(kit, pub=kit['dir']/'keys'/'other.key.pub'))   # --once: refused -> 1
    assert r.returncode == 1 and 'sequence 1 refused: wrong key' in r.stderr
    assert json.loads((tmp_path/'fresh'/'status.json').read_text())['version'] is None
    r = _agent(ch, tmp_path/'fresh', kit)
    assert r.returncode == 0 and json.loads((tmp_path/'fresh'/'status.json').read_text())['version'] == 1

def test_channel_over_http(kit, tmp_path):
    "The same channel served over HTTP (loopback): the device updates from it, and a missing file is a clear refusal."
    import functools, threading
    from http.server import ThreadingHTTPServer, SimpleHTTPRequestHandler
    from mlops_workbench.export import publish_export
    from mlops_workbench.edge import Device
    ch = tmp_path/'channel'
    publish_export(kit['dir']/'v1', ch, kit['key'])
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *a): pass
    srv = ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Quiet, directory=str(ch)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f'http://127.0.0.1:{srv.server_address[1]}'
        dev = Device(tmp_path/'dev', kit['pub'], log=lambda line: None)
        assert dev.check(url) == 'updated' and dev.pointer()['version'] == 1
        publish_export(kit['dir']/'v2', ch, kit['key'])
        (ch/'bundles'/'000002'/'model.onnx').unlink()
        assert dev.check(url) == 'refused' and 'model.onnx: named by the manifest but missing from the channel' in dev.last_error
        assert not (ch/'devices').exists()   # an HTTP channel is read-only for devices: status stays on the device
    finally:
        srv.shutdown()
        srv.server_close()

def test_agent_module_imports_nothing_heavy(tmp_path):
    "The agent's module loads no other workbench module and none of torch, MLflow, Ray, pandas, onnx; export is light too."
    from conftest import py
    code = ("import sys, mlops_workbench.edge; "
            "print(sorted(m for m in sys.modules if m.startswith('mlops_workbench'))); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'mlflow', 'ray', 'pymilvus', 'pandas', 'onnx', "
            "'onnxruntime', 'cryptography', 'scipy', 'sklearn', 'yaml'})); import mlops_workbench.export; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'mlflow', 'onnx', 'onnxruntime', 'cryptography'}))")
    lines = py(code, tmp_path, fresh=True).stdout.split('\n')
    assert lines[:3] == ["['mlops_workbench', 'mlops_workbench.edge']", '[]', '[]'], lines
    assert list(tmp_path.iterdir()) == []

def test_one_agent_per_device(kit, tmp_path):
    "A second agent on the same device folder is refused in one line while the first runs; after it ends, one may start."
    import subprocess, time
    from mlops_workbench.export import publish_export
    ch, dev = tmp_path/'channel', tmp_path/'dev'
    publish_export(kit['dir']/'v1', ch, kit['key'])
    first = subprocess.Popen([*AGENT, 'run', '--channel', str(ch), '--device', str(dev), '--trust', str(kit['pub']),
                              '--poll', '0.2'], env=clean_env(), stderr=subprocess.DEVNULL)
    try:
        t0 = time.monotonic()
        while not (dev/'status.json').exists():
            assert time.monotonic() - t0 < 60 and first.poll() is None
            time.sleep(0.1)
        r = _agent(ch, dev, kit)
        assert r.returncode == 1 and r.stderr.strip() == f"mlwb-edge: error: {dev}: another agent is running on this device (agent pid {first.pid})"
    finally:
        first.terminate()
        first.wait(timeout=30)
    assert first.returncode == 0 and _agent(ch, dev, kit).returncode == 0
