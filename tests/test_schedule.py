"""Learning-rate schedules and the weight average."""

import pytest
import torch

from segnn.config import TrainConfig
from segnn.train.ema import WeightAverage
from segnn.train.schedule import learning_rate_factor, scheduled_epochs


def test_schedules_by_epochs_without_a_time_budget():
    config = TrainConfig(epochs=10, scheduler="cosine", warmup_epochs=1)
    assert learning_rate_factor(config, 0.5) == pytest.approx(0.501)  # warm-up
    assert learning_rate_factor(config, 1.0, elapsed_s=1e6) == pytest.approx(1.0)
    assert learning_rate_factor(config, 5.5) == pytest.approx(0.5)
    assert learning_rate_factor(config, 10.0) == pytest.approx(0.0)
    linear = TrainConfig(epochs=10, scheduler="linear", warmup_epochs=1)
    assert learning_rate_factor(linear, 5.5) == pytest.approx(0.5)
    steps = TrainConfig(epochs=10, scheduler="multistep", milestones=[0.8, 0.9], gamma=0.1)
    assert learning_rate_factor(steps, 7.9) == 1.0
    assert learning_rate_factor(steps, 8.5) == pytest.approx(0.1)
    assert learning_rate_factor(steps, 9.5) == pytest.approx(0.01)


def test_a_time_budget_shapes_the_schedule():
    """A 1,000-epoch recipe given 12 minutes decays over the 12 minutes, not over 1,000 epochs."""
    config = TrainConfig(epochs=1000, scheduler="multistep", max_minutes=12)
    assert scheduled_epochs(config, 1.5, elapsed_s=360) == pytest.approx(500)
    assert learning_rate_factor(config, 1.5, elapsed_s=0.79 * 720) == 1.0
    assert learning_rate_factor(config, 1.5, elapsed_s=0.85 * 720) == pytest.approx(0.1)
    assert learning_rate_factor(config, 1.5, elapsed_s=0.95 * 720) == pytest.approx(0.01)
    cosine = TrainConfig(epochs=1000, scheduler="cosine", max_minutes=12)
    assert learning_rate_factor(cosine, 1.0, elapsed_s=360) == pytest.approx(0.5)
    # epochs that end first still end the schedule
    short = TrainConfig(epochs=2, scheduler="cosine", max_minutes=60)
    assert learning_rate_factor(short, 1.0, elapsed_s=60) == pytest.approx(0.5)


def test_weight_average_follows_the_weights_and_swaps_them_in():
    model = torch.nn.Linear(3, 2)
    average = WeightAverage(model, decay=0.5)
    start = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    average.update()  # first decay: min(0.5, 2 / 11)
    expected = [s + (1 - 2 / 11) for s in start]
    assert all(torch.allclose(a, e) for a, e in zip(average.average, expected))
    trained = [p.detach().clone() for p in model.parameters()]
    with average.applied():
        assert all(torch.allclose(p, e) for p, e in zip(model.parameters(), expected))
    assert all(torch.equal(p, t) for p, t in zip(model.parameters(), trained))
    restored = WeightAverage(torch.nn.Linear(3, 2), decay=0.5)
    restored.load_state_dict(average.state_dict())
    assert restored.updates == 1
    assert all(torch.equal(a, b) for a, b in zip(restored.average, average.average))
    with pytest.raises(ValueError, match="does not fit"):
        WeightAverage(torch.nn.Linear(4, 2), 0.5).load_state_dict(average.state_dict())
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(model, decay=1.0)


def test_ema_decay_out_of_range_names_the_key():
    from segnn.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="train.ema_decay"):
        load_config("configs/qm9.yaml", ["train.ema_decay=1.5"])
