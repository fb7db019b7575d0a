"""`mlwb --help` answers at once: building the whole parser (every subcommand's help) imports no numerical or heavy
package. The time itself is a benchmark (bench/README.md), not asserted here."""
import sys
from conftest import py

SLOW = ('numpy', 'pandas', 'pyarrow', 'scipy', 'sklearn', 'torch', 'ray', 'mlflow', 'pymilvus', 'papermill', 'dvc')

def test_help_builds_the_parser_without_heavy_imports(tmp_path):
    code = ("import sys\nfrom mlops_workbench.cli import build_parser\np = build_parser()\n"
            "helps = [a.choices[c].format_help() for a in p._subparsers._group_actions for c in a.choices]\n"
            f"print(len(helps), [m for m in {SLOW!r} if m in sys.modules])")
    n, heavy = py(code, tmp_path).stdout.strip().split(' ', 1)
    assert int(n) > 10 and heavy == '[]', heavy
