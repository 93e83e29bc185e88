"""The input handling of the captured step (``graphs.py``), on the CPU; the capture and replay
themselves are tested on CUDA in test_train.py (test_cuda_graphs_train_as_eager_does)."""
import pytest
import torch

from qsd.graphs import clone, copy_into, same_shapes, tensors


def lm_inputs(T: int = 35, B: int = 20, H: int = 8):
    """A language model's (batch, state): (x, y) windows and two layers' (h, c)."""
    batch = (torch.randint(0, 50, (T, B)), torch.randint(0, 50, (T, B)))
    state = [(torch.randn(1, B, H, requires_grad=True), torch.randn(1, B, H)) for _ in range(2)]
    return batch, state


def test_tensors_walks_batches_and_states_in_order():
    batch, state = lm_inputs()
    got = list(tensors((batch, state)))
    assert len(got) == 6 and got[0] is batch[0] and got[-1] is state[1][1]
    assert list(tensors((batch, None))) == list(batch)
    with pytest.raises(TypeError, match="got dict"):
        list(tensors({"x": batch[0]}))


def test_the_short_last_window_and_a_first_missing_state_do_not_match_the_capture():
    batch, state = lm_inputs()
    assert same_shapes((batch, state), clone((batch, state)))
    short, _ = lm_inputs(T=12)
    assert not same_shapes((short, state), (batch, state))
    assert not same_shapes((batch, None), (batch, state))
    assert not same_shapes((batch, state), ((batch[0].float(), batch[1]), state))


def test_clone_gives_detached_copies_and_copy_into_fills_them_without_grad():
    batch, state = lm_inputs()
    static = clone((batch, state))
    assert not any(t.requires_grad for t in tensors(static))
    assert all(a is not b and torch.equal(a, b) for a, b in zip(tensors(static), tensors((batch, state))))
    new_batch, new_state = lm_inputs()
    new_state[0] = (new_state[0][0] * 2, new_state[0][1])  # a state with autograd history, as a step returns
    copy_into(static, (new_batch, new_state))
    assert all(torch.equal(a, b) for a, b in zip(tensors(static), tensors((new_batch, new_state))))
    assert not any(t.requires_grad for t in tensors(static))

