"""The counter-based QSD sampler: Philox known answers, the mask as a pure function of (seed,
element index), the Triton kernel against the CPU kernel (interpreted on the CPU here, compiled
where there is a GPU), and the portable torch backend against both in distribution."""
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest
import torch
from scipy import stats

from qsd.regularisers import build
from qsd.regularisers.qsd_cpu import philox4x32, qsd_mask_cpu

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
CASES = [  # kernel parameters that exercise every branch: fixed quanta, boost (cv > 1), many sites
    {"rate": 0.5},
    {"rate": 0.5, "cv": 0.0},
    {"rate": 0.3, "n": 2, "cv": 2.0, "alpha": 4.0},
    {"rate": 0.2, "n": 8, "cv": 1.5, "alpha": 0.5},
    {"rate": 0.5, "n": 3, "cv": 0.3, "mapping": "failure"},
]


@numba.njit
def _philox(c0, c1, c2, c3, k0, k1):
    u = np.uint64
    return philox4x32(u(c0), u(c1), u(c2), u(c3), u(k0), u(k1))


@pytest.mark.parametrize("counter,key,expect", [  # Random123's kat_vectors, philox4x32-10
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
])
def test_philox_matches_known_answers(counter, key, expect):
    assert tuple(int(w) for w in _philox(*counter, *key)) == expect


def _mask(shape, seed, **params):
    mod = build("qsd", **params)
    return qsd_mask_cpu(shape, seed, mod.thresholds.numpy(), mod.cv, mod._scale)


@pytest.mark.parametrize("params", CASES[:3])
def test_mask_is_a_function_of_seed_and_index_only(params):
    seed = 2**40 + 11
    full = _mask((100_000,), seed, **params)
    assert torch.equal(_mask((70_001,), seed, **params), full[:70_001])  # chunk boundaries move
    assert torch.equal(_mask((100, 1000), seed, **params).flatten(), full)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = _mask((100_000,), seed, **params)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(single, full)
    assert not torch.equal(_mask((100_000,), seed + 1, **params), full)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_cpu_kernel_works_in_a_forked_child():
    mod = build("qsd", rate=0.5)
    args = ((200_000,), 5, mod.thresholds.numpy(), mod.cv, mod._scale)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # make sure the parent has started its thread pool
    try:
        parent = qsd_mask_cpu(*args).numpy()
        pid = os.fork()
        if pid == 0:  # the child: same mask, from a pool of its own (the parent's threads are gone);
            signal.alarm(60)  # no torch ops here (OpenMP is not fork-safe), and no hanging forever
            os._exit(0 if np.array_equal(qsd_mask_cpu(*args).numpy(), parent) else 1)
        _, status = os.waitpid(pid, 0)
    finally:
        torch.set_num_threads(threads)
    assert os.waitstatus_to_exitcode(status) == 0


def test_triton_kernel_matches_cpu_kernel_interpreted():
    cases = [{"params": p, "seed": s, "shape": [5_003]} for p in CASES for s in (3, 2**33 + 5)]
    # small blocks and rejection tiles: a block's rejected groups fill several tiles, and (8 groups a
    # block) each program's queue of them wraps around its ring many times, looked at every block or
    # every 3 blocks; the mask alone (forward and backward are the same launch, checked in the cases above)
    cases += [{"params": p, "seed": 7, "shape": [4_099], "constants": {"GROUPS": g, "SLOW": 2, "BATCH": b},
               "autograd": False}
              for p in CASES[2:4] for g, b in ((64, 1), (8, 3))]
    helper = Path(__file__).with_name("qsd_triton_interpreted.py")
    run = subprocess.run([sys.executable, str(helper), json.dumps(cases)], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    for case, got in zip(cases, json.loads(run.stdout.strip().splitlines()[-1])):
        assert got["close"] == 1.0 and got["max_abs"] < 1e-4, (case, got)
        if case.get("autograd", True):
            assert got["forward"] < 1e-5 and got["grad"] < 1e-6, (case, got)  # backward regenerates the mask


@pytest.mark.parametrize("params", [CASES[0], CASES[2]])
def test_torch_backend_has_the_kernels_distribution(params):
    torch.manual_seed(0)
    x = torch.ones(200_000)
    a = build("qsd", **params).train()(x).numpy()
    b = build("qsd", backend="torch", **params).train()(x).numpy()
    assert stats.ks_2samp(a, b).pvalue > 1e-4


@CUDA
@pytest.mark.parametrize("params", CASES)
def test_cuda_kernel_matches_cpu_kernel(params):
    mod = build("qsd", **params).cuda().train()
    seed, shape = 2**35 + 1, (3_000_001,)
    ref = qsd_mask_cpu(shape, seed, mod.thresholds.cpu().numpy(), mod.cv, mod._scale)
    from qsd.regularisers import qsd_cuda

    got = qsd_cuda.qsd_mask(shape, torch.tensor([seed], device="cuda"), mod.thresholds, mod.cv, mod._scale).cpu()
    assert torch.isclose(ref, got, rtol=1e-5, atol=1e-6).double().mean().item() > 1 - 1e-4  # approx. log/cos on GPU


@CUDA
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_kernel_stores_no_mask_and_regenerates_it(dtype):
    mod = build("qsd", rate=0.5).cuda().train()
    x = torch.randn(4096, 1024, device="cuda", dtype=dtype, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        torch.manual_seed(5)
        y = mod(x)
    y.backward(torch.ones_like(y))
    assert saved == []
    torch.manual_seed(5)
    mask = mod(torch.ones_like(x))
    torch.testing.assert_close(x.grad, mask)
    assert math.isclose(mask.double().mean().item(), 1.0, abs_tol=5e-3)


@CUDA
def test_cuda_graph_replays_draw_fresh_masks_equal_to_eager(monkeypatch):
    """The key lives on the device and comes from torch's CUDA generator, so a captured step draws
    a new mask on every replay, and a replay computes what an eager call with its key computes."""
    from qsd.regularisers import qsd as qsd_module
    from qsd.regularisers import qsd_cuda

    keys = []
    draw = qsd_module.draw_key
    monkeypatch.setattr(qsd_module, "draw_key", lambda device: keys.append(draw(device)) or keys[-1])
    mod = build("qsd", rate=0.5).cuda().train()
    x = torch.randn(1024, 512, device="cuda", requires_grad=True)

    def step():
        y = mod(x)
        y.backward(torch.ones_like(y))
        return y

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()
    torch.cuda.current_stream().wait_stream(side)
    x.grad = None
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y = step()
    masks = []
    for _ in range(2):
        graph.replay()
        masks.append(x.grad.clone())
        eager = qsd_cuda.qsd_mask(tuple(x.shape), keys[-1].clone(), mod.thresholds, mod.cv, mod._scale)
        torch.testing.assert_close(masks[-1], eager, rtol=0, atol=0)
        torch.testing.assert_close(y, x.detach() * eager, rtol=0, atol=0)
    assert not torch.equal(masks[0], masks[1])
