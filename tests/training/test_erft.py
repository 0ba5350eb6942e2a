"""ERFT banks and injection: capacity, nearest replacement, timestep groups, rates, masks, state."""

import pytest
import torch
from safetensors.torch import load, save

from context_forcing.training.config import ErftConfig
from context_forcing.training.erft import ErrorBank, inject

FRAME = (2, 3, 3)


def _errors(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, *FRAME, generator=torch.Generator().manual_seed(seed))


def _ts(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def test_capacity_never_exceeded():
    bank = ErrorBank(ErftConfig(groups=4, bank_size=5), FRAME)
    for i in range(6):
        bank.add("x0", _errors(7, i), torch.full((7,), 100.0))  # group 0 of [0, 250)
        bank.add("noise", _errors(3, 50 + i), torch.full((3,), 999.0))
        assert all(bank.count(k, g) <= 5 for k in ("x0", "noise") for g in range(4))
    assert bank.count("x0", 0) == 5 and bank.count("noise", 3) == 5 and bank.count("x0", 3) == 0
    assert bank.entries("x0", 0).shape == (5, *FRAME)
    assert bank.nbytes() <= 2 * 4 * 5 * 18 * 4


def test_full_group_replaces_exactly_the_nearest_entry():
    bank = ErrorBank(ErftConfig(groups=1, bank_size=4), FRAME)
    stored = torch.stack([torch.full(FRAME, v) for v in (0.0, 10.0, 20.0, 30.0)])
    bank.add("x0", stored, torch.zeros(4))
    new = torch.full(FRAME, 18.0)  # nearest to 20 in L2
    bank.add("x0", new[None], torch.zeros(1))
    expected = torch.stack([stored[0], stored[1], new, stored[3]])
    torch.testing.assert_close(bank.entries("x0", 0), expected, rtol=0, atol=0)


def test_errors_are_stored_detached_on_cpu():
    bank = ErrorBank(ErftConfig(groups=2, bank_size=3), FRAME)
    errors = _errors(2).requires_grad_()
    bank.add("x0", errors, _ts(1.0, 2.0))
    assert not bank.entries("x0", 0).requires_grad and bank.entries("x0", 0).device.type == "cpu"


def test_sampling_follows_timestep_groups():
    bank = ErrorBank(ErftConfig(groups=10, bank_size=8), FRAME)
    early, late = torch.full(FRAME, 1.0), torch.full(FRAME, 9.0)
    bank.add("x0", early[None], _ts(10.0))
    bank.add("x0", late[None], _ts(905.0))
    g = torch.Generator().manual_seed(0)
    torch.testing.assert_close(bank.sample("x0", _ts(12.0, 12.0), g), early.expand(2, *FRAME))
    torch.testing.assert_close(bank.sample("x0", _ts(900.0, 1000.0), g), late.expand(2, *FRAME))


def test_sampling_is_uniform_within_a_group():
    bank = ErrorBank(ErftConfig(groups=1, bank_size=4), FRAME)
    bank.add("noise", torch.stack([torch.full(FRAME, float(v)) for v in range(4)]), torch.zeros(4))
    picks = bank.sample("noise", torch.zeros(4000), torch.Generator().manual_seed(0))[:, 0, 0, 0]
    freq = torch.bincount(picks.long(), minlength=4).float() / 4000
    torch.testing.assert_close(freq, torch.full((4,), 0.25), rtol=0, atol=0.03)


def test_fallback_to_nearest_group_and_zeros_when_empty():
    bank = ErrorBank(ErftConfig(groups=10, bank_size=8), FRAME)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(bank.sample("x0", _ts(5.0, 500.0), g), torch.zeros(2, *FRAME))
    bank.add("x0", torch.full((1, *FRAME), 3.0), _ts(350.0))  # group 3
    bank.add("x0", torch.full((1, *FRAME), 8.0), _ts(850.0))  # group 8
    out = bank.sample("x0", _ts(0.0, 450.0, 650.0, 999.0), g)[:, 0, 0, 0]
    torch.testing.assert_close(out, _ts(3.0, 3.0, 8.0, 8.0))
    assert torch.equal(bank.sample("noise", _ts(350.0), g), torch.zeros(1, *FRAME))  # kinds are separate


def test_state_dict_round_trip_through_safetensors():
    cfg = ErftConfig(groups=3, bank_size=4)
    bank = ErrorBank(cfg, FRAME)
    bank.add("x0", _errors(9, 1), torch.linspace(0, 999, 9))
    bank.add("noise", _errors(2, 2), _ts(500.0, 501.0))
    restored = ErrorBank(cfg, FRAME)
    restored.load_state_dict(load(save(bank.state_dict())))
    for kind in ("x0", "noise"):
        for group in range(3):
            assert restored.count(kind, group) == bank.count(kind, group)
            assert torch.equal(restored.entries(kind, group), bank.entries(kind, group))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    queries = _ts(1.0, 600.0)
    torch.testing.assert_close(restored.sample("x0", queries, g1), bank.sample("x0", queries, g2))
    with pytest.raises(ValueError, match="groups"):
        ErrorBank(ErftConfig(groups=4, bank_size=4), FRAME).load_state_dict(bank.state_dict())


def _filled_bank(cfg: ErftConfig) -> ErrorBank:
    bank = ErrorBank(cfg, FRAME)
    bank.add("x0", torch.ones(cfg.groups, *FRAME), torch.arange(cfg.groups) * 1000.0 / cfg.groups)
    return bank


def test_injection_rates_match_the_probabilities():
    cfg = ErftConfig(groups=5, bank_size=4, p_clean=0.3, p_context=0.6, p_target=0.8)
    bank, g = _filled_bank(cfg), torch.Generator().manual_seed(0)
    b, trials = 64, 40
    context, target = torch.zeros(b, 4, *FRAME), torch.zeros(b, 3, *FRAME)
    fast = torch.ones(b, 4, dtype=torch.bool)
    totals = {"clean": 0, "context": 0, "target": 0}
    for _ in range(trials):
        new_context, new_target, info = inject(context, fast, target, bank, cfg, g)
        for key in totals:
            totals[key] += info[key]
        # the counts describe what happened: perturbed samples are exactly the counted ones
        assert int((new_context != 0).flatten(1).any(1).sum()) == info["context"]
        assert int((new_target != 0).flatten(1).any(1).sum()) == info["target"] == info["target_frames"] // 3
    rates = torch.tensor([totals[k] for k in ("clean", "context", "target")]) / (b * trials)
    expected = torch.tensor([0.3, 0.7 * 0.6, 0.7 * 0.8])
    torch.testing.assert_close(rates, expected, rtol=0, atol=0.04)  # ~5 standard errors at n = 2560


def test_injection_touches_only_allowed_frames():
    cfg = ErftConfig(groups=2, bank_size=4, p_clean=0.0, p_context=1.0, p_target=1.0)
    bank, g = _filled_bank(cfg), torch.Generator().manual_seed(1)
    context, target = torch.randn(3, 6, *FRAME), torch.randn(3, 2, *FRAME)
    originals = context.clone(), target.clone()
    fast = torch.zeros(3, 6, dtype=torch.bool)
    fast[:, 4:] = True
    fast[2] = False  # a sample without fast frames
    slow = torch.zeros_like(fast)
    slow[:, 1:3] = True
    for inject_slow, allowed in ((False, fast), (True, fast | slow)):
        run = ErftConfig(groups=2, bank_size=4, p_clean=0.0, p_context=1.0, p_target=1.0,
                         inject_slow=inject_slow)
        new_context, new_target, info = inject(context, (fast, slow), target, bank, run, g)
        changed = (new_context != context).flatten(2).any(2)
        assert torch.equal(changed, allowed)
        torch.testing.assert_close(new_target, target + 1)
        assert info["context_frames"] == int(allowed.sum())
    assert torch.equal(context, originals[0]) and torch.equal(target, originals[1])  # out of place


def test_clean_probability_one_leaves_everything_untouched():
    cfg = ErftConfig(groups=2, bank_size=4, p_clean=1.0)
    context, target = torch.randn(2, 3, *FRAME), torch.randn(2, 2, *FRAME)
    everything = torch.ones(2, 3, dtype=torch.bool)
    new_context, new_target, info = inject(context, everything, target, _filled_bank(cfg), cfg,
                                           torch.Generator().manual_seed(0))
    assert torch.equal(new_context, context) and torch.equal(new_target, target) and info["clean"] == 2


def test_zero_bank_size_disables_erft():
    cfg = ErftConfig(groups=2, bank_size=0, p_clean=0.0, p_context=1.0, p_target=1.0)
    bank = ErrorBank(cfg, FRAME)
    bank.add("x0", _errors(3), _ts(1.0, 2.0, 3.0))
    assert bank.count("x0", 0) == 0 and bank.nbytes() == 0
    context, target = torch.randn(2, 3, *FRAME), torch.randn(2, 2, *FRAME)
    new_context, new_target, _ = inject(context, torch.ones(2, 3, dtype=torch.bool), target, bank, cfg,
                                        torch.Generator().manual_seed(0))
    assert torch.equal(new_context, context) and torch.equal(new_target, target)


def test_add_rejects_wrong_frame_shape_and_kind():
    bank = ErrorBank(ErftConfig(groups=2, bank_size=2), FRAME)
    with pytest.raises(ValueError, match="shape"):
        bank.add("x0", torch.zeros(1, 5), _ts(1.0))
    with pytest.raises(ValueError, match="shape"):
        bank.add("v", _errors(1), _ts(1.0))
