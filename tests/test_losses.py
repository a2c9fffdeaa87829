"""Losses against values computed by hand."""

import math

import pytest
import torch

from rewardlab.training.losses import (
    bradley_terry_loss,
    centering_penalty,
    length_correlation_penalty,
    plackett_luce_loss,
)


def sig(x):
    return 1 / (1 + math.exp(-x))


def test_bradley_terry_hand_values():
    chosen, rejected = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    expected = (-math.log(sig(1.0)) - math.log(sig(-1.0))) / 2
    assert bradley_terry_loss(chosen, rejected).item() == pytest.approx(expected, abs=1e-6)


def test_bradley_terry_margin_is_subtracted():
    chosen, rejected, margin = torch.tensor([2.0]), torch.tensor([1.0]), torch.tensor([0.5])
    assert bradley_terry_loss(chosen, rejected, margin).item() == pytest.approx(-math.log(sig(0.5)), abs=1e-6)
    # A margin equal to the score gap leaves log 2.
    assert bradley_terry_loss(chosen, rejected, torch.tensor([1.0])).item() == pytest.approx(math.log(2), abs=1e-6)


def test_bradley_terry_swap_is_mirror():
    c, r = torch.tensor([0.3, -1.2, 2.0]), torch.tensor([0.1, 0.4, -0.5])
    forward = -torch.nn.functional.logsigmoid(c - r)
    backward = -torch.nn.functional.logsigmoid(r - c)
    # loss(c, r) - loss(r, c) = -(c - r) summed: log σ(x) - log σ(-x) = x
    assert (forward - backward).sum().item() == pytest.approx(-(c - r).sum().item(), abs=1e-5)
    assert bradley_terry_loss(c, r).item() == pytest.approx(forward.mean().item(), abs=1e-6)


def test_centering_penalty_hand_value():
    scores = torch.tensor([1.0, -3.0, 2.0, 0.0])
    assert centering_penalty(scores, 0.01).item() == pytest.approx(0.01 * (1 + 9 + 4 + 0) / 4)


def test_length_correlation_penalty_hand_values():
    # margins 1, 2, 3 against gaps 10, 0, 20: centred (-1, 0, 1) and (0, -10, 10): Σ m·g = 10, Σ g² = 200, b = 3
    margins, gaps = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10, 0, 20])
    assert length_correlation_penalty(margins, gaps, 0.5).item() == pytest.approx(0.5 * 10 / math.sqrt(600), abs=1e-6)
    # It is |slope of the margin on the gap| · std(gap): here slope 0.05, std(gap) = sqrt(200 / 3).
    assert 10 / math.sqrt(600) == pytest.approx(0.05 * math.sqrt(200 / 3))
    # The sign does not matter; a constant gap or margin gives exactly zero (and no NaN).
    assert length_correlation_penalty(-margins, gaps, 1.0).item() == pytest.approx(10 / math.sqrt(600), abs=1e-6)
    assert length_correlation_penalty(margins, torch.tensor([4, 4, 4]), 1.0).item() == 0.0
    flat = torch.ones(3, requires_grad=True)
    zero = length_correlation_penalty(flat, gaps, 1.0)
    zero.backward()
    assert zero.item() == 0.0 and torch.isfinite(flat.grad).all()
    # The gradient does not grow as the margins shrink (|corr|'s would, as 1 / std(margin)).
    for scale in (1.0, 1e-4):
        m = (scale * torch.tensor([-2.0, 0.5, 2.0])).requires_grad_()
        length_correlation_penalty(m, torch.tensor([-5, 0, 5]), 2.0).backward()
        assert m.grad.abs().max().item() == pytest.approx(2.0 * 5 / math.sqrt(3 * 50), abs=1e-5)


def test_length_decorrelation_is_added_to_the_training_loss(tmp_path):
    """Through RewardTrainer.compute_loss: the batch's loss is BT + coef·|ρ(margin, row-length gap)| in training,
    plain BT in evaluation."""
    from transformers import TrainingArguments

    from rewardlab.config.schema import LossConfig, ModelConfig
    from rewardlab.models.backbones import load_backbone, load_tokenizer
    from rewardlab.models.reward_model import RewardModel
    from rewardlab.training.trainer import RewardTrainer
    from tests.tiny import make_tiny

    cfg = ModelConfig(name_or_path=str(make_tiny(tmp_path / "tiny")))
    tok = load_tokenizer(cfg)
    model = RewardModel(load_backbone(cfg, tok, None), pooling="last")
    args = TrainingArguments(output_dir=str(tmp_path / "run"), use_cpu=True, report_to="none")
    trainer = RewardTrainer(model=model, args=args, processing_class=tok, export_meta={},
                            loss_config=LossConfig(length_decorrelation=0.7))  # fmt: skip
    ids = torch.tensor([[5, 6, 7, 8], [5, 6, 0, 0], [5, 9, 9, 0], [5, 6, 7, 0], [5, 6, 0, 0], [5, 8, 0, 0]])
    mask = (ids != 0).long()
    batch = {"input_ids": ids, "attention_mask": mask, "margin": torch.zeros(3)}
    model.eval()
    with torch.no_grad():
        scores = model(input_ids=ids, attention_mask=mask)
        plain = trainer.compute_loss(model, batch)
        model.train()
        penalized = trainer.compute_loss(model, batch)
    chosen, rejected = scores[:3], scores[3:]
    expected_penalty = length_correlation_penalty(chosen - rejected, torch.tensor([1, -1, 1]), 0.7)
    assert plain.item() == pytest.approx(bradley_terry_loss(chosen, rejected).item(), abs=1e-6)
    assert expected_penalty.item() > 0.01
    assert penalized.item() == pytest.approx(plain.item() + expected_penalty.item(), abs=1e-5)


def test_plackett_luce_three_responses_hand_value():
    s = torch.tensor([2.0, 1.0, 0.0])
    ranks = torch.tensor([1, 2, 3])
    lse = lambda *xs: math.log(sum(math.exp(x) for x in xs))  # noqa: E731
    expected = -((2 - lse(2, 1, 0)) + (1 - lse(1, 0)) + 0.0)
    assert plackett_luce_loss(s, ranks, torch.tensor([3])).item() == pytest.approx(expected, abs=1e-6)


def test_plackett_luce_order_of_listing_does_not_matter():
    s, ranks = torch.tensor([0.0, 2.0, 1.0]), torch.tensor([3, 1, 2])
    ref = plackett_luce_loss(torch.tensor([2.0, 1.0, 0.0]), torch.tensor([1, 2, 3]), torch.tensor([3]))
    assert plackett_luce_loss(s, ranks, torch.tensor([3])).item() == pytest.approx(ref.item(), abs=1e-6)


def test_plackett_luce_k2_equals_bradley_terry():
    c, r = torch.tensor([0.7, -0.2]), torch.tensor([0.1, 0.9])
    scores = torch.stack([c, r], 1).reshape(-1)  # groups (c0, r0), (c1, r1)
    ranks = torch.tensor([1, 2, 1, 2])
    pl = plackett_luce_loss(scores, ranks, torch.tensor([2, 2]))
    assert pl.item() == pytest.approx(bradley_terry_loss(c, r).item(), abs=1e-6)


def test_plackett_luce_ties_share_a_risk_set_and_gaps_are_fine():
    # ranks [1, 3, 3] (a gap and a tie): terms s0 - lse(all), s1 - lse(s1, s2), s2 - lse(s1, s2)
    s = torch.tensor([1.0, 0.5, -0.5])
    lse = lambda *xs: math.log(sum(math.exp(x) for x in xs))  # noqa: E731
    expected = -((1.0 - lse(1.0, 0.5, -0.5)) + (0.5 - lse(0.5, -0.5)) + (-0.5 - lse(0.5, -0.5)))
    got = plackett_luce_loss(s, torch.tensor([1, 3, 3]), torch.tensor([3]))
    assert got.item() == pytest.approx(expected, abs=1e-6)


def test_plackett_luce_mixed_group_sizes_mean_over_groups_and_finite_grads():
    s = torch.tensor([2.0, 1.0, 0.0, 0.3, -0.3], requires_grad=True)
    ranks = torch.tensor([1, 2, 3, 1, 2])
    loss = plackett_luce_loss(s, ranks, torch.tensor([3, 2]))
    g1 = plackett_luce_loss(s[:3], ranks[:3], torch.tensor([3]))
    g2 = plackett_luce_loss(s[3:], ranks[3:], torch.tensor([2]))
    assert loss.item() == pytest.approx((g1.item() + g2.item()) / 2, abs=1e-6)
    loss.backward()
    assert torch.isfinite(s.grad).all()
