"""Run the Triton kernel under TRITON_INTERPRET=1 (CPU tensors) and print, per case, how far it is
from the CPU kernel. Called by tests/test_qsd_kernels.py in a fresh process, because Triton reads
the variable when the kernel is defined."""
import json
import os
import sys

os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402

from qsd.regularisers import build  # noqa: E402
from qsd.regularisers import qsd_cuda  # noqa: E402
from qsd.regularisers.qsd_cpu import qsd_mask_cpu  # noqa: E402

report = []
for case in json.loads(sys.argv[1]):
    for name, value in case.get("constants", {}).items():  # launch constants (GROUPS, SLOW, BATCH): the mask must not move
        setattr(qsd_cuda, name, value)
    mod = build("qsd", **case["params"])
    seed, shape = case["seed"], tuple(case["shape"])
    ref = qsd_mask_cpu(shape, seed, mod.thresholds.numpy(), mod.cv, mod._scale)
    key = torch.tensor([seed])
    got = qsd_cuda.qsd_mask(shape, key, mod.thresholds, mod.cv, mod._scale)
    report.append({
        "max_abs": (ref - got).abs().max().item(),
        "close": torch.isclose(ref, got, rtol=1e-5, atol=1e-6).double().mean().item(),
    })
    if case.get("autograd", True):  # the module's path: y = x * m forward, m regenerated backward
        x = torch.randn(shape, requires_grad=True)
        y = qsd_cuda.QSDMultiply.apply(x, key, mod.thresholds, mod.cv, mod._scale)
        y.backward(torch.ones_like(y))
        report[-1]["forward"] = (y.detach() - x.detach() * got).abs().max().item()
        report[-1]["grad"] = (x.grad - got).abs().max().item()
print(json.dumps(report))
