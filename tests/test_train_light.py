"""Seeding makes torch deterministic without loading its compiler stack (torch._inductor costs ~1.6 s in every
process that trains, Ray workers included)."""
from conftest import py

def test_seed_everything_is_deterministic_and_light(tmp_path):
    code = ("import sys, torch\nfrom mlops_workbench.train import seed_everything\nseed_everything(0, threads=1)\n"
            "a = torch.rand(3).tolist()\nseed_everything(0)\n"
            "print(torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),"
            " 'torch._inductor' in sys.modules, a == torch.rand(3).tolist())")
    assert py(code, tmp_path, fresh=True).stdout.split() == ['True', 'True', 'False', 'True']
