"""Models by name and the normaliser inside (pretrained files: tests/test_paper.py)."""

import pytest
import torch

from rtstudy.vision.models import (
    MODELS,
    build_model,
    count_parameters,
    model_from_spec,
)


@pytest.mark.parametrize("name", MODELS)
def test_every_model_builds_and_runs(name):
    model = build_model(name, 7, in_channels=1, image_size=28).eval()
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 7)
    names = dict(model.named_parameters())
    assert "net.conv1.weight" in names and "net.fc.weight" in names


def test_normaliser_is_inside():
    model = build_model("resnet8", 10, in_channels=3, mean=(0.1, 0.2, 0.3), std=(0.5, 0.5, 0.5))
    x = torch.rand(1, 3, 8, 8)
    assert torch.allclose(model.normalize(x), (x - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / 0.5)
    assert "normalize.mean" in model.state_dict()


def test_spec_round_trip_and_head_reset():
    model = build_model("resnet20", 10, in_channels=1, image_size=28, width=0.5)
    clone = model_from_spec(model.spec)
    assert clone.spec == model.spec
    model.reset_head(3)
    assert model(torch.rand(1, 1, 28, 28)).shape == (1, 3) and model.spec["num_classes"] == 3
    assert model.features(torch.rand(2, 1, 28, 28)).shape == (2, 32)


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="vgg11"), "vgg11"),
    (dict(name="resnet8", in_channels=2), "in_channels"),
    (dict(name="resnet8", width=0), "width"),
    (dict(name="resnet18", width=2.0), "width"),
    (dict(name="resnet8", image_size=0), "image_size=0"),
    (dict(name="resnet8", image_size=28.5), "image_size=28.5"),
])
def test_bad_model_inputs(kwargs, match):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=match):
        build_model(name, 10, **kwargs)


@pytest.mark.parametrize("num_classes", [0, 2.0, True])
def test_num_classes_must_be_a_positive_int(num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        build_model("resnet8", num_classes)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("resnet8", 10).reset_head(num_classes)


def test_count_parameters():
    assert count_parameters(torch.nn.Linear(3, 2)) == 8
    model = build_model("resnet8", 10, in_channels=1, image_size=28)
    expected = sum(p.numel() for p in model.parameters())
    assert count_parameters(model) == expected > 0
    model.reset_head(3)
    assert count_parameters(model) == expected - 7 * (model.head.in_features + 1)
