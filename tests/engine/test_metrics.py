"""Top-k, mean per-class accuracy, per-class accuracy and the confusion matrix."""

from __future__ import annotations

import math

import pytest
import torch

from rsanet.engine.distributed import DistEnv
from rsanet.engine.metrics import ClassificationMeter, topk_correct


def test_topk_correct():
    scores = torch.tensor([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1], [0.2, 0.3, 0.5]])
    labels = torch.tensor([2, 0, 0])
    assert topk_correct(scores, labels, (1, 2, 5)) == [1, 2, 3]  # k > C counts every row
    assert topk_correct(scores[:0], labels[:0], (1,)) == [0]


def test_meter_on_imbalanced_classes():
    # class 0: 3 samples, 2 right; class 1: 1 sample, right; class 2: none
    labels = torch.tensor([0, 0, 0, 1])
    predictions = torch.tensor([0, 0, 1, 1])
    scores = torch.nn.functional.one_hot(predictions, 3).float()
    meter = ClassificationMeter(3)
    meter.update(scores[:2], labels[:2], loss_sum=1.0)
    meter.update(scores[2:], labels[2:], loss_sum=3.0)
    result = meter.compute()
    assert result["top1"] == pytest.approx(75.0)
    assert result["per_class"] == [pytest.approx(200 / 3), 100.0, None]
    assert result["mean_class"] == pytest.approx((200 / 3 + 100) / 2)  # classes with samples
    assert result["top5"] == 100.0
    assert result["loss"] == pytest.approx(1.0)
    assert result["num_samples"] == 4
    assert meter.confusion.tolist() == [[2, 1, 0], [0, 1, 0], [0, 0, 0]]


def test_meter_without_samples_or_loss():
    meter = ClassificationMeter(2)
    assert math.isnan(meter.compute()["top1"])
    meter.update(torch.tensor([[0.0, 1.0]]), torch.tensor([1]))
    assert meter.compute()["loss"] is None


def test_meter_checks_shapes_and_single_process_reduce_is_identity():
    meter = ClassificationMeter(4)
    with pytest.raises(ValueError, match=r"scores must be \(N, 4\)"):
        meter.update(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
    meter.update(torch.eye(4), torch.arange(4))
    meter.all_reduce(DistEnv())
    assert meter.compute()["top1"] == 100.0


def test_pair_metrics_of_temporal_opposites():
    """Pair accuracy counts a prediction in the right pair; per pair, top-1 on its videos."""
    import torch

    from rsanet.engine.evaluate import pair_metrics

    confusion = torch.tensor(
        [
            [8, 2, 0, 0],  # class 0: 8 right, 2 in the opposite class
            [5, 5, 0, 0],  # class 1: at chance within the pair
            [0, 0, 10, 0],
            [0, 1, 0, 9],  # one video put in the wrong pair
        ]
    )
    result = pair_metrics(confusion, ["a", "a backwards", "b", "b backwards"])
    assert result["pair_accuracy"] == pytest.approx(100 * 39 / 40)
    assert result["per_pair"] == {
        "a / a backwards": pytest.approx(65.0),
        "b / b backwards": pytest.approx(95.0),
    }
