"""`mlwb --help` answers at once: building the whole parser (every subcommand's help) imports no numerical or heavy
package. The time itself is a benchmark (bench/README.md), not asserted here."""
import sys
from conftest import py

SLOW = ('numpy', 'pandas', 'pyarrow', 'scipy', 'sklearn', 'torch', 'ray', 'mlflow', 'pymilvus', 'papermill', 'dvc')

def test_help_builds_the_parser_without_heavy_imports(tmp_path):
    code = ("import sys\nfrom mlops_workbench.cli import build_parser\np = build_parser()\n"
            "helps = [a.choices[c].format_help() for a in p._subparsers._group_actions for c in a.choices]\n"
            f"print(len(helps), [m for m in {SLOW!r} if m in sys.modules])")
    n, heavy = py(code, tmp_path, fresh=True).stdout.strip().split(' ', 1)
    assert int(n) > 10 and heavy == '[]', heavy

def test_a_missing_extra_is_one_line_naming_it(monkeypatch, capsys):
    import mlops_workbench.cli as cli
    def needs_mlflow(args): raise ModuleNotFoundError("No module named 'mlflow'", name='mlflow')
    monkeypatch.setattr(cli, 'cmd_ui', needs_mlflow)
    assert cli.main(['ui']) == 1
    err = capsys.readouterr().err.strip()
    assert err == "mlwb: error: ui needs mlflow, which this installation lacks: pip install 'mlops-workbench[pipeline]'", err
