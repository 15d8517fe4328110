"""Say which torch build an install put in the venv, and warn when it cannot use this machine.

Run by ``make install`` after pip: ``python constraints/check_torch.py [--cuda]`` (``--cuda``: the
machine has a CUDA GPU). Exit status 0 always: a CUDA build on a CPU machine works, only bigger.
"""

import importlib.util
import sys

if importlib.util.find_spec("torch") is None:
    print("torch: not installed (light install)")
    sys.exit(0)

import torch

cuda = torch.version.cuda
print(f"torch: {torch.__version__} ({'CUDA ' + cuda if cuda else 'CPU'} build)")
if cuda and "--cuda" not in sys.argv:
    print("warning: a CUDA build of torch on a machine without a CUDA GPU (it runs on the CPU, but "
          "pulled the nvidia-* packages); for the CPU build: rm -rf .venv and make install where "
          "https://download.pytorch.org/whl/cpu is reachable, or give pip a wheelhouse with the "
          "+cpu wheel (README: Install)", file=sys.stderr)
if not cuda and "--cuda" in sys.argv:
    print("warning: a CPU build of torch on a machine with a CUDA GPU: training runs on the CPU "
          "(README: Install, machine with CUDA)", file=sys.stderr)
