"""Every registered loss: scalar, backward, no NaN, determinism; Dice against MONAI; class weights."""

import math

import pytest
import torch

from femurseg.models import LOSSES
from femurseg.models.losses import FocalLoss, boundary_distance


def _batch(classes=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, classes, 8, 8, 8, generator=generator)
    target = torch.zeros(2, 8, 8, 8, dtype=torch.long)
    target[:, 2:6, 2:6, 2:6] = 1
    if classes > 2:
        target[:, 3:5, 3:5, 3:5] = 2
    return logits, target


@pytest.mark.parametrize("name", LOSSES.names())
@pytest.mark.parametrize("classes", [2, 3])
def test_scalar_backward_no_nan(name, classes):
    logits, target = _batch(classes)
    logits.requires_grad_(True)
    loss = LOSSES.create(name)(logits, target)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    assert torch.equal(loss.detach(), LOSSES.create(name)(logits.detach(), target))  # deterministic


@pytest.mark.parametrize("name", LOSSES.names())
def test_perfect_prediction_scores_lower(name):
    logits, target = _batch()
    perfect = 20 * torch.nn.functional.one_hot(target, 3).movedim(-1, 1).float()
    loss_fn = LOSSES.create(name)
    assert loss_fn(perfect, target) < 0.05 < loss_fn(logits, target)


@pytest.mark.parametrize("name", LOSSES.names())
def test_class_weights_are_accepted_and_checked(name):
    logits, target = _batch()
    weighted = LOSSES.create(name, class_weights=[0.1, 1.0, 3.0])(logits, target)
    assert torch.isfinite(weighted) and not torch.isclose(weighted, LOSSES.create(name)(logits, target))
    with pytest.raises(ValueError, match="class_weights"):
        LOSSES.create(name, class_weights=[1.0, 2.0])(logits, target)


def test_losses_run_in_float32_under_bf16_logits():
    logits, target = _batch()
    for name in LOSSES.names():
        loss = LOSSES.create(name)(logits.bfloat16(), target)
        assert loss.dtype == torch.float32


@pytest.mark.parametrize("batch_dice", [True, False])
@pytest.mark.parametrize("include_background", [True, False])
def test_dice_matches_monai(batch_dice, include_background):
    monai_losses = pytest.importorskip("monai.losses")
    logits, target = _batch()
    ours = LOSSES.create("dice", batch_dice=batch_dice, include_background=include_background)(logits, target)
    reference = monai_losses.DiceLoss(
        include_background=include_background, to_onehot_y=True, softmax=True, batch=batch_dice,
        smooth_nr=1e-5, smooth_dr=1e-5,
    )(logits, target[:, None])
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


def test_dice_ce_matches_monai():
    monai_losses = pytest.importorskip("monai.losses")
    logits, target = _batch()
    ours = LOSSES.create("dice_ce")(logits, target)
    reference = monai_losses.DiceCELoss(
        include_background=False, to_onehot_y=True, softmax=True, batch=True, smooth_nr=1e-5, smooth_dr=1e-5,
    )(logits, target[:, None])
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


def test_focal_reduces_to_ce_and_matches_formula():
    logits, target = _batch()
    ce = torch.nn.functional.cross_entropy(logits, target)
    torch.testing.assert_close(FocalLoss(gamma=0.0)(logits, target), ce)
    p = logits.softmax(1).gather(1, target[:, None])[:, 0]
    torch.testing.assert_close(FocalLoss(gamma=2.0)(logits, target), (-(1 - p) ** 2 * p.log()).mean())


@pytest.mark.parametrize("metric", ["chessboard", "euclidean"])
def test_boundary_distance(metric):
    target = torch.zeros(1, 9, 9, 9, dtype=torch.long)
    target[0, 3:6, 3:6, 3:6] = 1
    distance = boundary_distance(target, metric)
    assert distance[0, 3, 4, 4] == 0 and distance[0, 2, 4, 4] == 0  # both sides of the surface
    assert distance[0, 4, 4, 4] == 1  # centre of the cube
    expected = math.sqrt(22) if metric == "euclidean" else 3.0  # nearest boundary voxel: (2, 3, 3)
    assert distance[0, 0, 0, 0] == pytest.approx(expected, rel=1e-6)
    assert torch.isinf(boundary_distance(torch.zeros(1, 4, 4, 4, dtype=torch.long))).all()


def test_boundary_loss_weights_the_band():
    loss_fn = LOSSES.create("dice_boundary_ce", boundary_weight=4.0, sigma=1.0)
    _, target = _batch()
    weights = loss_fn.voxel_weights(target)
    torch.testing.assert_close(weights, 1 + 4 * torch.exp(-boundary_distance(target).square() / 2))
    assert weights.max() == pytest.approx(5.0) and weights.min() < 1.6
    assert weights[0, 2, 3, 3] == pytest.approx(5.0)  # on the outer surface


@pytest.mark.parametrize("name", LOSSES.names())
@pytest.mark.parametrize("weights", [None, [0.5, 1.0, 2.0]])
def test_one_hot_soft_targets_equal_integer_targets(name, weights):
    logits, target = _batch(3)
    one_hot = torch.nn.functional.one_hot(target, 3).movedim(-1, 1).float()
    loss = LOSSES.create(name, class_weights=weights)
    torch.testing.assert_close(loss(logits, one_hot), loss(logits, target))


def test_weighted_cross_entropy_matches_torch():
    logits, target = _batch(3)
    weights = [0.5, 1.0, 2.0]
    dice_free = LOSSES.create("dice_ce", dice_weight=0.0, class_weights=weights)
    ce = torch.nn.functional.cross_entropy(logits, target, weight=torch.tensor(weights))
    torch.testing.assert_close(dice_free(logits, target), ce)


@pytest.mark.parametrize("name", ["dice_ce", "focal", "dice_focal", "dice_boundary_ce"])
def test_soft_targets_are_learned_as_fractions(name):
    # partial-volume voxels (30 % foreground): a loss with a cross-entropy or focal term
    # prefers p = 0.3 over the hard answers (soft Dice alone does not: see the next test)
    target = torch.zeros(1, 2, 4, 4, 4)
    target[:, 1] = torch.tensor(0.3)
    target[:, 1, :2] = 1.0                     # a clear foreground part keeps the Dice terms defined
    target[:, 0] = 1 - target[:, 1]
    loss_fn = LOSSES.create(name)

    def loss_at(p):
        logits = torch.zeros(1, 2, 4, 4, 4)
        logits[:, 1, :2] = 10.0
        logits[:, 1, 2:] = math.log(p / (1 - p))
        return float(loss_fn(logits, target))

    assert loss_at(0.3) < loss_at(0.05) and loss_at(0.3) < loss_at(0.95)
    with pytest.raises(ValueError, match="classes"):
        loss_fn(torch.zeros(1, 3, 4, 4, 4), target)


def test_soft_dice_alone_pushes_partial_volume_voxels_to_hard_answers():
    # d Dice / d p_i has the sign of t_i - Dice / 2: below about one half, p is pushed to 0
    target = torch.zeros(1, 2, 4, 4, 4)
    target[:, 1, :2], target[:, 1, 2:] = 1.0, 0.3
    target[:, 0] = 1 - target[:, 1]
    logits = torch.zeros(1, 2, 4, 4, 4)
    logits[:, 1, :2], logits[:, 1, 2:] = 10.0, math.log(0.3 / 0.7)
    logits.requires_grad_(True)
    LOSSES.create("dice")(logits, target).backward()
    assert (logits.grad[0, 1, 2:] > 0).all()        # gradient descent lowers the 30 % voxels' logit


def test_cross_entropy_alone_is_minimised_at_the_bone_fraction():
    # why the quick start trains with dice_weight 0: on partial-volume voxels (30 % bone) the
    # cross-entropy optimum is p = 0.3, so the 0.5 iso-surface keeps volumes; the Dice term moves
    # the optimum (here to about 0.26), a bias that thresholding at 0.5 turns into volume error
    target = torch.zeros(1, 2, 4, 4, 4)
    target[:, 1], target[:, 1, :2] = 0.3, 1.0
    target[:, 0] = 1 - target[:, 1]

    def optimum(loss_fn) -> float:
        def loss_at(p: float) -> float:
            logits = torch.zeros(1, 2, 4, 4, 4)
            logits[:, 1, :2], logits[:, 1, 2:] = 10.0, math.log(p / (1 - p))
            return float(loss_fn(logits, target))
        return min((i / 1000 for i in range(1, 1000)), key=loss_at)

    assert optimum(LOSSES.create("dice_ce", dice_weight=0.0)) == pytest.approx(0.3, abs=1e-3)
    assert optimum(LOSSES.create("dice_ce")) < 0.28
