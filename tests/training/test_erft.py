"""ERFT banks and injection: capacity, replacement (oldest / nearest), groups, slices, rates, masks, state."""

import pytest
import torch
from safetensors.torch import load, save

from context_forcing.training.config import ErftConfig
from context_forcing.training.erft import ErrorBank, banked_error, inject

FRAME = (2, 3, 3)


def _errors(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, *FRAME, generator=torch.Generator().manual_seed(seed))


def _ts(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def _numbered(*values: float) -> torch.Tensor:
    """Frames whose every entry is the given number, so a picked error tells where it came from."""
    return torch.stack([torch.full(FRAME, float(v)) for v in values])


def test_groups_fill_to_capacity_by_timestep():
    bank = ErrorBank(ErftConfig(groups=4, bank_size=5), FRAME)
    for i in range(3):
        bank.add(_errors(7, i), torch.full((7,), 100.0))  # group 0 of [0, 250)
        bank.add(_errors(3, 50 + i), torch.full((3,), 999.0))  # t = T - 1 joins the last group
    assert bank.count(0) == 5 and bank.count(3) == 5 and bank.count(1) == 0
    assert bank.entries(0).shape == (5, *FRAME)


def test_oldest_replacement_lets_stale_errors_age_out():
    """The failure it prevents: huge early errors of an untrained model that stay in the bank for ever."""
    bank = ErrorBank(ErftConfig(groups=1, bank_size=4), FRAME)
    bank.add(_numbered(100, 101, 102, 103), torch.zeros(4))  # the untrained model's errors
    bank.add(_numbered(1, 2, 3, 4, 5, 6), torch.zeros(6))  # later, small errors
    assert bank.entries(0)[:, 0, 0, 0].tolist() == [3.0, 4.0, 5.0, 6.0]  # oldest first, early ones gone


def test_nearest_replacement_is_svis_rule():
    bank = ErrorBank(ErftConfig(groups=1, bank_size=4, replacement="nearest"), FRAME)
    stored = _numbered(0, 10, 20, 30)
    bank.add(stored, torch.zeros(4))
    bank.add(_numbered(11), torch.zeros(1))  # nearest to 10
    assert bank.entries(0)[:, 0, 0, 0].tolist() == [0.0, 11.0, 20.0, 30.0]


def test_entries_are_detached_cpu_copies():
    bank = ErrorBank(ErftConfig(groups=2, bank_size=3), FRAME)
    errors = _errors(2).requires_grad_()
    bank.add(errors, _ts(1.0, 2.0))
    assert not bank.entries(0).requires_grad and bank.entries(0).device.type == "cpu"


def test_slices_are_consecutive_frames_of_one_group():
    bank = ErrorBank(ErftConfig(groups=10, bank_size=8), FRAME)
    bank.add(_numbered(0, 1, 2, 3, 4), torch.full((5,), 10.0))  # one 5-frame prediction in group 0
    bank.add(_numbered(50, 51), torch.full((2,), 905.0))  # group 9
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        picked = bank.sample_slice(12.0, 3, g)[:, 0, 0, 0]
        start = picked[0]
        assert picked.tolist() == [float((start + k) % 5) for k in range(3)]  # consecutive, wrapping
    assert set(bank.sample_slice(999.0, 2, g)[:, 0, 0, 0].tolist()) <= {50.0, 51.0}


def test_slice_start_is_uniform():
    bank = ErrorBank(ErftConfig(groups=1, bank_size=4), FRAME)
    bank.add(_numbered(0, 1, 2, 3), torch.zeros(4))
    g = torch.Generator().manual_seed(0)
    picks = torch.stack([bank.sample_slice(0.0, 1, g)[0, 0, 0, 0] for _ in range(4000)])
    freq = torch.bincount(picks.long(), minlength=4).float() / 4000
    torch.testing.assert_close(freq, torch.full((4,), 0.25), rtol=0, atol=0.03)


def test_fallback_to_nearest_group_and_zeros_when_empty():
    bank = ErrorBank(ErftConfig(groups=10, bank_size=8), FRAME)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(bank.sample_slice(500.0, 2, g), torch.zeros(2, *FRAME))
    bank.add(_numbered(3), _ts(350.0))  # group 3
    bank.add(_numbered(8), _ts(850.0))  # group 8
    picked = [float(bank.sample_slice(t, 1, g)[0, 0, 0, 0]) for t in (0.0, 450.0, 650.0, 999.0)]
    assert picked == [3.0, 3.0, 8.0, 8.0]
    assert bank.std() > 0


def test_banked_error_is_what_the_model_missed_of_its_target():
    """Injected target errors must not compound: a perfect prediction banks zero, whatever was injected."""
    clean, noise, injected = torch.randn(2, 3, *FRAME), torch.randn(2, 3, *FRAME), torch.randn(2, 3, *FRAME)
    sigma = torch.tensor([0.3, 0.9])
    s = sigma[:, None, None, None, None]
    x_t = (1 - s) * (clean + injected) + s * noise  # the input was built from the perturbed target
    v_target = noise - clean  # the model is asked for the velocity toward the clean target
    assert banked_error(x_t, v_target, v_target, sigma).abs().max() == 0
    v = v_target + 0.1
    torch.testing.assert_close(banked_error(x_t, v, v_target, sigma), -0.1 * s.expand_as(v))


def test_state_dict_round_trip_through_safetensors_keeps_order():
    cfg = ErftConfig(groups=3, bank_size=4)
    bank = ErrorBank(cfg, FRAME)
    bank.add(_errors(9, 1), torch.zeros(9))  # wraps the ring of group 0
    bank.add(_errors(2, 2), _ts(500.0, 501.0))
    restored = ErrorBank(cfg, FRAME)
    restored.load_state_dict(load(save(bank.state_dict())))
    for group in range(3):
        assert restored.count(group) == bank.count(group)
        assert torch.equal(restored.entries(group), bank.entries(group))
    bank.add(_numbered(7), _ts(0.0))
    restored.add(_numbered(7), _ts(0.0))  # both replace the same (oldest) entry
    assert torch.equal(restored.entries(0), bank.entries(0))
    with pytest.raises(ValueError, match="groups"):
        ErrorBank(ErftConfig(groups=4, bank_size=4), FRAME).load_state_dict(bank.state_dict())


def _filled_bank(cfg: ErftConfig) -> ErrorBank:
    bank = ErrorBank(cfg, FRAME)
    bank.add(torch.ones(cfg.groups, *FRAME), torch.arange(cfg.groups) * 1000.0 / cfg.groups)
    return bank


def test_injection_rates_match_the_probabilities():
    cfg = ErftConfig(groups=5, bank_size=4, p_clean=0.3, p_context=0.6, p_target=0.8)
    bank, g = _filled_bank(cfg), torch.Generator().manual_seed(0)
    b, trials = 64, 40
    context, target = torch.zeros(b, 4, *FRAME), torch.zeros(b, 3, *FRAME)
    fast = torch.ones(b, 4, dtype=torch.bool)
    totals = {"clean": 0, "context": 0, "target": 0}
    for _ in range(trials):
        new_context, new_target, info = inject(context, fast, target, torch.full((b,), 500.0), bank, cfg, g)
        for key in totals:
            totals[key] += info[key]
        # the counts describe what happened: perturbed samples are exactly the counted ones
        assert int((new_context != 0).flatten(1).any(1).sum()) == info["context"]
        assert int((new_target != 0).flatten(1).any(1).sum()) == info["target"] == info["target_frames"] // 3
    rates = torch.tensor([totals[k] for k in ("clean", "context", "target")]) / (b * trials)
    expected = torch.tensor([0.3, 0.7 * 0.6, 0.7 * 0.8])
    torch.testing.assert_close(rates, expected, rtol=0, atol=0.04)  # ~5 standard errors at n = 2560


def test_target_error_comes_from_the_samples_own_timestep_group():
    cfg = ErftConfig(groups=4, bank_size=4, p_clean=0.0, p_context=0.0, p_target=1.0)
    bank = ErrorBank(cfg, FRAME)
    for group in range(4):
        bank.add(_numbered(group, group), torch.full((2,), 250.0 * group + 1))
    target = torch.zeros(4, 2, *FRAME)
    t = _ts(10.0, 300.0, 600.0, 990.0)
    _, new_target, _ = inject(torch.zeros(4, 0, *FRAME), torch.zeros(4, 0, dtype=torch.bool), target, t, bank,
                              cfg, torch.Generator().manual_seed(0))
    assert new_target[:, :, 0, 0, 0].tolist() == [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]


def test_injection_touches_only_allowed_frames_out_of_place():
    cfg = ErftConfig(groups=2, bank_size=4, p_clean=0.0, p_context=1.0, p_target=1.0)
    bank, g = _filled_bank(cfg), torch.Generator().manual_seed(1)
    context, target = torch.randn(3, 6, *FRAME), torch.randn(3, 2, *FRAME)
    originals = context.clone(), target.clone()
    allowed = torch.zeros(3, 6, dtype=torch.bool)
    allowed[:, 4:] = True
    allowed[2] = False  # a sample without fast frames
    new_context, new_target, info = inject(context, allowed, target, _ts(1.0, 2.0, 3.0), bank, cfg, g)
    assert torch.equal((new_context != context).flatten(2).any(2), allowed)
    torch.testing.assert_close(new_target, target + 1)
    assert info["context_frames"] == int(allowed.sum())
    assert torch.equal(context, originals[0]) and torch.equal(target, originals[1])


def test_clean_probability_one_leaves_everything_untouched():
    cfg = ErftConfig(groups=2, bank_size=4, p_clean=1.0)
    context, target = torch.randn(2, 3, *FRAME), torch.randn(2, 2, *FRAME)
    everything = torch.ones(2, 3, dtype=torch.bool)
    new_context, new_target, info = inject(context, everything, target, _ts(1.0, 2.0), _filled_bank(cfg), cfg,
                                           torch.Generator().manual_seed(0))
    assert torch.equal(new_context, context) and torch.equal(new_target, target) and info["clean"] == 2


def test_zero_bank_size_disables_erft():
    cfg = ErftConfig(groups=2, bank_size=0, p_clean=0.0, p_context=1.0, p_target=1.0)
    bank = ErrorBank(cfg, FRAME)
    bank.add(_errors(3), _ts(1.0, 2.0, 3.0))
    assert bank.count(0) == 0 and bank.std() == 0.0
    context, target = torch.randn(2, 3, *FRAME), torch.randn(2, 2, *FRAME)
    new_context, new_target, _ = inject(context, torch.ones(2, 3, dtype=torch.bool), target, _ts(1.0, 2.0),
                                        bank, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(new_context, context) and torch.equal(new_target, target)


def test_add_rejects_wrong_shapes():
    bank = ErrorBank(ErftConfig(groups=2, bank_size=2), FRAME)
    with pytest.raises(ValueError, match="errors"):
        bank.add(torch.zeros(1, 5), _ts(1.0))
    with pytest.raises(ValueError, match="errors"):
        bank.add(_errors(2), _ts(1.0))


def test_config_rejects_unknown_replacement_and_negative_warmup():
    with pytest.raises(ValueError, match="replacement"):
        ErftConfig(replacement="random")
    with pytest.raises(ValueError, match="warmup"):
        ErftConfig(warmup_steps=-1)
