"""The fleet (issue 11.6): five agent processes with their own folders on one channel converge on v1, v2, then a signed
rollback to v1 within a bound; `mlwb edge status` shows it; every device predicts exactly what the exported model does."""
import json, subprocess, sys, time
from pathlib import Path
import numpy as np
from conftest import sh, clean_env
from test_edge_agent import kit, AGENT   # the signing keys and the tiny models' exports

N, POLL, BOUND = 5, 1.0, 30.0

def statuses(devs):
    out = []
    for d in devs:
        try: out.append(json.loads((d/'status.json').read_text()))
        except (FileNotFoundError, json.JSONDecodeError): out.append({})
    return out

def converge(devs, seq, t0) -> float:
    "Seconds from `t0` until every device reports sequence `seq` (fails after BOUND)."
    while time.monotonic() - t0 < BOUND:
        if all(s.get('sequence') == seq for s in statuses(devs)): return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"not converged on sequence {seq} within {BOUND:.0f}s: {statuses(devs)}")

def test_five_devices_converge_and_agree(kit, tmp_path):
    from mlops_workbench.export import publish_export, onnx_proba
    from mlops_workbench.edge import EdgeModel
    ch, devs = tmp_path/'channel', [tmp_path/f'dev{i}' for i in range(N)]
    ch.mkdir()
    procs = [subprocess.Popen([*AGENT, 'run', '--channel', str(ch), '--device', str(d), '--trust', str(kit['pub']),
                               '--poll', str(POLL), '--max-seconds', '240'], cwd=tmp_path, env=clean_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for d in devs]
    try:
        t0 = time.monotonic()
        while not all(s.get('state') == 'empty' for s in statuses(devs)):   # every agent is up and polling
            assert time.monotonic() - t0 < 60, [p.poll() for p in procs]
            time.sleep(0.1)
        X = kit['X'][:, :3]
        times = {}
        for seq, (v, rollback) in enumerate([(1, False), (2, False), (1, True)], 1):
            t0 = time.monotonic()
            publish_export(kit['dir']/f'v{v}', ch, kit['key'], rollback=rollback)
            times[seq] = converge(devs, seq, t0)
            want = onnx_proba(kit['dir']/f'v{v}'/'model.onnx', X)
            for d in devs:
                got = EdgeModel(d).predict_proba(X)
                assert np.array_equal(got.argmax(1), want.argmax(1)) and np.abs(got - want).max() <= 1e-6
                assert {r['model_version'] for r in EdgeModel(d).predict(X)} == {v}
        print(f"fleet of {N}, poll {POLL}s: converged after publish in " + ', '.join(f'seq {k}: {t:.2f}s' for k, t in times.items()))
        (tmp_path/'params.yaml').write_text('')   # `mlwb edge status` acts inside a project
        r = sh(['mlwb', 'edge', 'status', '--channel', str(ch)], tmp_path)
        lines = r.stdout.splitlines()
        assert lines[0] == 'channel: sequence 3, version 1' and len(lines) == 2 + N
        assert all(l.split()[1:4] == ['1', '3', 'yes'] for l in lines[2:]), r.stdout
        assert all(p.poll() is None for p in procs)   # still polling
    finally:
        for p in procs: p.terminate()
        for p in procs:
            try: p.wait(timeout=20)
            except subprocess.TimeoutExpired: p.kill()
    assert [p.returncode for p in procs] == [0] * N, [p.stderr.read()[-500:] for p in procs]
