"""False-alarm and detection rates of the drift monitor on small data: bench/drift.py with a small model and 5
seeds per scenario (the recorded 20-seed figures are in bench/results/drift.json)."""
import json, sys
import pytest
from conftest import REPO, sh

pytestmark = pytest.mark.slow   # the drift benchmark on 5 seeds per scenario


def test_false_alarm_and_detection_rates(tmp_path):
    out = tmp_path/'drift.json'
    sh([sys.executable, str(REPO/'bench'/'drift.py'), '--seeds', '5', '--quick', '--no-curve', '--out', str(out)], tmp_path)
    r = json.loads(out.read_text())
    assert r['defaults']['none']['alarms'] <= 1, r['defaults']['none']           # goal: <= 5%
    for s, d in r['defaults'].items():
        if s != 'none': assert d['alarms'] >= 4, d                                # goal: >= 95%
    assert r['defaults']['prior']['by_family']['predictions'] == 5                # the class mix is what moved
    assert r['defaults']['novel']['by_family']['embedding'] >= 4                  # negatives sit far from every training digit
