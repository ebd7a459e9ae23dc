"""The distance loss: hand-computed values, Lightly's DCL, symmetry, memory bank, the sign."""

from __future__ import annotations

import math

import pytest
import torch
from lightly.loss import DCLLoss
from torch import nn

from contrastive.errors import ContrastiveError
from contrastive.losses import DISTANCES, DistanceContrastiveLoss


def reference_distance(a: torch.Tensor, b: torch.Tensor, distance: str) -> torch.Tensor:
    """Row-to-row distances ``(n, d), (m, d) -> (n, m)``, written independently of the module."""
    if distance == "cosine":
        return 1.0 - nn.functional.normalize(a, dim=1) @ nn.functional.normalize(b, dim=1).T
    euclidean = torch.cdist(a, b)
    return euclidean if distance == "euclidean" else euclidean.pow(2)


def brute_force_loss(
    out0: torch.Tensor, out1: torch.Tensor, tau: float, distance: str
) -> torch.Tensor:
    """Loops over all 2N views: positive = the other view of the same image, negatives =
    both views of every other image; mean of ``d_pos / tau + log sum exp(-d_neg / tau)``."""
    out0 = nn.functional.normalize(out0, dim=1)
    out1 = nn.functional.normalize(out1, dim=1)
    n = out0.shape[0]
    terms = []
    for anchors, positives in ((out0, out1), (out1, out0)):
        for i in range(n):
            d_pos = reference_distance(anchors[i : i + 1], positives[i : i + 1], distance)[0, 0]
            negatives = torch.stack(
                [view[j] for j in range(n) if j != i for view in (anchors, positives)]
            )
            d_neg = reference_distance(anchors[i : i + 1], negatives, distance)[0]
            terms.append(d_pos / tau + torch.log(torch.exp(-d_neg / tau).sum()))
    return torch.stack(terms).mean()


def random_pair(batch_size: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    out0 = torch.randn(batch_size, dim, generator=generator, dtype=torch.float64)
    out1 = out0 + 0.5 * torch.randn(batch_size, dim, generator=generator, dtype=torch.float64)
    return out0, out1


# Orthogonal unit vectors, both views of an image identical: d_pos = 0 and the two in-batch
# negatives of every view are the two (identical) views of the other image, at distance d:
#   loss = 0 + log(2 exp(-d / tau)) = log 2 - d / tau,  tau = 0.5:
#   cosine            d = 1 - 0 = 1      -> log 2 - 2       = -1.30685
#   euclidean         d = sqrt(2)        -> log 2 - 2 sqrt 2 = -2.13528
#   squared_euclidean d = 2              -> log 2 - 4       = -3.30685
ORTHOGONAL_CASES = [
    ("cosine", math.log(2) - 1.0 / 0.5),
    ("euclidean", math.log(2) - math.sqrt(2) / 0.5),
    ("squared_euclidean", math.log(2) - 2.0 / 0.5),
]


@pytest.mark.parametrize(("distance", "expected"), ORTHOGONAL_CASES)
def test_orthogonal_two_image_example_by_hand(distance: str, expected: float) -> None:
    out0 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    out1 = out0.clone()
    loss = DistanceContrastiveLoss(temperature=0.5, distance=distance)(out0, out1)
    assert loss.item() == pytest.approx(expected, abs=1e-5)


# Image 0: view (1, 0), view (0, 1); image 1: view (-1, 0), view (0, -1). For every view the
# positive is at 90 degrees (cos 0), the other image's view of the same augmentation at 180
# degrees (cos -1) and its other view at 90 degrees (cos 0). tau = 1:
#   cosine            d_pos = 1,       d_neg = (2, 1)       -> 1 + log(e^-2 + e^-1)
#   euclidean         d_pos = sqrt 2,  d_neg = (2, sqrt 2)  -> sqrt 2 + log(e^-2 + e^-sqrt 2)
#   squared_euclidean d_pos = 2,       d_neg = (4, 2)       -> 2 + log(e^-4 + e^-2)
AXES_CASES = [
    ("cosine", 1 + math.log(math.exp(-2) + math.exp(-1))),  # = 0.31326
    ("euclidean", math.sqrt(2) + math.log(math.exp(-2) + math.exp(-math.sqrt(2)))),  # = 0.44255
    ("squared_euclidean", 2 + math.log(math.exp(-4) + math.exp(-2))),  # = 0.12693
]


@pytest.mark.parametrize(("distance", "expected"), AXES_CASES)
def test_axes_two_image_example_by_hand(distance: str, expected: float) -> None:
    out0 = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    out1 = torch.tensor([[0.0, 1.0], [0.0, -1.0]])
    loss = DistanceContrastiveLoss(temperature=1.0, distance=distance)(out0, out1)
    assert loss.item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize(("batch_size", "dim", "tau"), [(3, 2, 1.0), (8, 16, 0.2)])
def test_equals_brute_force_loop(distance: str, batch_size: int, dim: int, tau: float) -> None:
    out0, out1 = random_pair(batch_size, dim, seed=batch_size)
    loss = DistanceContrastiveLoss(temperature=tau, distance=distance)(out0, out1)
    torch.testing.assert_close(loss, brute_force_loss(out0, out1, tau, distance))


@pytest.mark.parametrize("batch_size", [2, 5, 16])
@pytest.mark.parametrize("dim", [3, 32])
@pytest.mark.parametrize("tau", [0.07, 0.5, 1.0])
def test_cosine_equals_lightly_dcl(batch_size: int, dim: int, tau: float) -> None:
    # (1 - cos_pos)/tau + log sum exp(-(1 - cos_neg)/tau) = -cos_pos/tau + log sum exp(cos_neg/tau)
    out0, out1 = random_pair(batch_size, dim, seed=dim * batch_size)
    out0.requires_grad_(True)
    ours = DistanceContrastiveLoss(temperature=tau, distance="cosine")(out0, out1)
    (grad_ours,) = torch.autograd.grad(ours, out0)
    theirs = DCLLoss(temperature=tau)(out0, out1)
    (grad_theirs,) = torch.autograd.grad(theirs, out0)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(grad_ours, grad_theirs)


@pytest.mark.parametrize("tau", [0.1, 0.5, 2.0])
def test_cosine_equals_lightly_dcl_float32(tau: float) -> None:
    out0, out1 = (x.float() for x in random_pair(12, 8, seed=3))
    ours = DistanceContrastiveLoss(temperature=tau, distance="cosine")(out0, out1)
    torch.testing.assert_close(ours, DCLLoss(temperature=tau)(out0, out1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("tau", [0.1, 0.5, 1.0])
def test_squared_euclidean_is_dcl_at_half_temperature(tau: float) -> None:
    # On the unit sphere |a - b|^2 = 2 - 2 cos = 2 (1 - cos): dividing by tau is the cosine
    # distance divided by tau / 2.
    out0, out1 = random_pair(10, 6, seed=7)
    ours = DistanceContrastiveLoss(temperature=tau, distance="squared_euclidean")(out0, out1)
    torch.testing.assert_close(ours, DCLLoss(temperature=tau / 2)(out0, out1))


def test_euclidean_differs_from_dcl() -> None:
    # sqrt(2 - 2 cos) is not an affine function of cos: no temperature makes it DCL.
    out0, out1 = random_pair(10, 6, seed=7)
    ours = DistanceContrastiveLoss(temperature=0.5, distance="euclidean")(out0, out1)
    for tau in (0.25, 0.5, 1.0):
        assert not torch.allclose(ours, DCLLoss(temperature=tau)(out0, out1), atol=1e-3)


@pytest.mark.parametrize("distance", DISTANCES)
def test_symmetric_in_its_arguments(distance: str) -> None:
    out0, out1 = random_pair(9, 5, seed=11)
    loss = DistanceContrastiveLoss(temperature=0.3, distance=distance)
    torch.testing.assert_close(loss(out0, out1), loss(out1, out0))
    # ... and not trivially so: each direction alone is not symmetric.
    forward, backward = loss._in_batch(*_unit(out0, out1)), loss._in_batch(*_unit(out1, out0))
    assert not torch.allclose(forward, backward)


def _unit(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(nn.functional.normalize(t, dim=1) for t in tensors)


@pytest.mark.parametrize("distance", DISTANCES)
def test_memory_bank_uses_queue_as_negatives_and_enqueues_normalised_keys(distance: str) -> None:
    torch.manual_seed(0)
    size, dim, batch, tau = 8, 3, 4, 0.2
    loss = DistanceContrastiveLoss(temperature=tau, distance=distance, memory_bank_size=(size, dim))
    bank = loss.memory_bank.bank.clone()
    queries = torch.randn(batch, dim, requires_grad=True)
    keys = 3.0 * torch.randn(batch, dim)  # not unit length: the queue must hold normalised keys

    value = loss(queries, keys)

    q, k = _unit(queries, keys)
    d_pos = reference_distance(q, k, distance).diagonal()
    d_neg = reference_distance(q, bank, distance)  # the queue *before* this batch's keys
    expected = (d_pos / tau + torch.log(torch.exp(-d_neg / tau).sum(1))).mean()
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(loss.memory_bank.bank[:batch], k)
    torch.testing.assert_close(loss.memory_bank.bank[batch:], bank[batch:])
    assert int(loss.memory_bank.bank_ptr) == batch

    # Queries without grad (evaluation): the queue is read but left alone.
    with torch.no_grad():
        loss(torch.randn(batch, dim), torch.randn(batch, dim))
    torch.testing.assert_close(loss.memory_bank.bank[:batch], k)
    torch.testing.assert_close(loss.memory_bank.bank[batch:], bank[batch:])
    assert int(loss.memory_bank.bank_ptr) == batch

    # The next batch with grad fills the rest and the pointer wraps around.
    more_keys = torch.randn(batch, dim)
    loss(torch.randn(batch, dim, requires_grad=True), more_keys)
    torch.testing.assert_close(loss.memory_bank.bank[batch:], _unit(more_keys)[0])
    assert int(loss.memory_bank.bank_ptr) == 0


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("memory_bank_size", [0, (6, 3)])
@pytest.mark.parametrize("normalize", [True, False])
def test_finite_gradients_when_embeddings_coincide(
    distance: str, memory_bank_size: object, normalize: bool
) -> None:
    # Views 0 and 1 equal each other and their positives: zero positive and zero negative
    # distances, where d sqrt(x)/dx is infinite without the epsilon.
    v = torch.tensor([[0.6, 0.8, 0.0]])
    out0 = torch.cat([v, v, torch.tensor([[0.0, 0.0, 1.0]])]).requires_grad_(True)
    out1 = torch.cat([v, v, torch.tensor([[1.0, 0.0, 0.0]])]).requires_grad_(True)
    loss = DistanceContrastiveLoss(
        temperature=0.1, distance=distance, normalize=normalize, memory_bank_size=memory_bank_size
    )
    if memory_bank_size:
        loss.memory_bank.bank[:] = torch.cat([v, v, v, v, v, v])  # negatives equal the queries
    value = loss(out0, out1)
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(out0.grad).all()
    assert torch.isfinite(out1.grad).all()


@pytest.mark.parametrize("temperature", [0.0, -0.5, float("nan")])
def test_invalid_temperature_raises(temperature: float) -> None:
    with pytest.raises(ContrastiveError, match="temperature"):
        DistanceContrastiveLoss(temperature=temperature)


def test_unknown_distance_raises() -> None:
    with pytest.raises(ContrastiveError, match="manhattan"):
        DistanceContrastiveLoss(distance="manhattan")


def test_mismatched_shapes_raise() -> None:
    with pytest.raises(ValueError, match="expected two"):
        DistanceContrastiveLoss()(torch.randn(4, 3), torch.randn(5, 3))


# --- The sign ---------------------------------------------------------------------------------


def literal_document_loss(out0: torch.Tensor, out1: torch.Tensor, distance: str) -> torch.Tensor:
    """The design document's formula as written, on the same views and negatives:
    ``L = 1/N sum_i [ d(z_i, z_i+) - log sum_j exp(-d(z_i, z_j-)) ]`` (symmetrised)."""
    out0, out1 = _unit(out0, out1)
    n = out0.shape[0]
    other = ~torch.eye(n, dtype=torch.bool)
    total = 0.0
    for anchors, positives in ((out0, out1), (out1, out0)):
        d_pos = reference_distance(anchors, positives, distance).diagonal()
        d_neg = torch.cat(
            [
                reference_distance(anchors, anchors, distance)[other].view(n, -1),
                reference_distance(anchors, positives, distance)[other].view(n, -1),
            ],
            dim=1,
        )
        total = total + 0.5 * (d_pos - torch.logsumexp(-d_neg, dim=1)).mean()
    return total


def mean_distances(out0: torch.Tensor, out1: torch.Tensor, distance: str) -> tuple[float, float]:
    """(mean positive distance, mean distance between views of different images)."""
    out0, out1 = _unit(out0, out1)
    views = torch.cat([out0, out1])
    n = out0.shape[0]
    image = torch.arange(2 * n) % n
    different = image[:, None] != image[None, :]
    d = reference_distance(views, views, distance)
    return (
        reference_distance(out0, out1, distance).diagonal().mean().item(),
        d[different].mean().item(),
    )


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sign_literal_formula_pulls_negatives_together_corrected_pushes_apart(
    distance: str, seed: int
) -> None:
    out0, out1 = random_pair(8, 4, seed=seed)
    out1 = out0 + 0.6 * (out1 - out0)  # positives a little closer than random
    corrected = DistanceContrastiveLoss(temperature=1.0, distance=distance)

    # Same terms, opposite sign of the negative term: literal + corrected = 2 mean d_pos.
    d_pos, d_neg = mean_distances(out0, out1, distance)
    torch.testing.assert_close(
        literal_document_loss(out0, out1, distance) + corrected(out0, out1),
        torch.tensor(2 * d_pos, dtype=torch.float64),
    )

    after = {}
    for name, loss_fn in (
        ("literal", lambda a, b: literal_document_loss(a, b, distance)),
        ("corrected", corrected),
    ):
        z0, z1 = out0.clone().requires_grad_(True), out1.clone().requires_grad_(True)
        loss_fn(z0, z1).backward()
        with torch.no_grad():  # one gradient-descent step on the embeddings
            after[name] = mean_distances(z0 - 0.2 * z0.grad, z1 - 0.2 * z1.grad, distance)

    # Both pull the positives in ...
    assert after["literal"][0] < d_pos
    assert after["corrected"][0] < d_pos
    # ... but the literal formula also pulls the negatives in (collapse), the corrected
    # one pushes them out.
    assert after["literal"][1] < d_neg
    assert after["corrected"][1] > d_neg


@pytest.mark.parametrize("first_own", [0, 3])
def test_negatives_are_gathered_without_boolean_masks(first_own: int) -> None:
    # The device-side gather must select exactly what the boolean mask selected.
    from contrastive.losses.distance import _without_own_column

    distances = torch.randn(3, 9)
    own_column = torch.arange(first_own, first_own + 3)
    mask = torch.zeros(3, 9, dtype=torch.bool)
    mask[torch.arange(3), own_column] = True

    expected = distances[~mask].view(3, 8)
    assert torch.equal(_without_own_column(distances, own_column), expected)
