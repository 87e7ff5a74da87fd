"""Models by name, the normaliser inside, and loading foreign checkpoints safely."""

import pytest
import torch

from rtstudy.vision.models import (
    MODELS,
    build_model,
    count_parameters,
    load_robustness_checkpoint,
    load_torchvision_weights,
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


def _robustness_checkpoint(path, net_state, mean, std):
    """A checkpoint in the MadryLab robustness-library layout."""
    state = {f"module.model.{k}": v for k, v in net_state.items()}
    state.update({f"module.attacker.model.{k}": v for k, v in net_state.items()})
    state["module.normalizer.new_mean"] = torch.tensor(mean).view(3, 1, 1)
    state["module.normalizer.new_std"] = torch.tensor(std).view(3, 1, 1)
    state["module.attacker.normalize.new_mean"] = torch.tensor(mean).view(3, 1, 1)
    state["module.attacker.normalize.new_std"] = torch.tensor(std).view(3, 1, 1)
    torch.save({"model": state, "epoch": 90}, path)


def test_load_robustness_checkpoint(tmp_path):
    donor = build_model("resnet18", 1000, in_channels=3, image_size=224)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    _robustness_checkpoint(tmp_path / "r.ckpt", donor.net.state_dict(), mean, std)
    model = build_model("resnet18", 10, in_channels=3, image_size=224)
    load_robustness_checkpoint(model, tmp_path / "r.ckpt")
    assert torch.equal(model.net.conv1.weight, donor.net.conv1.weight)
    assert model.net.fc.weight.shape == (10, 512), "a different class count keeps our head"
    assert torch.allclose(model.normalize.mean.flatten(), torch.tensor(mean))


def test_robustness_checkpoint_that_does_not_fit(tmp_path):
    donor = build_model("resnet50", 1000, in_channels=3, image_size=224)
    _robustness_checkpoint(tmp_path / "r.ckpt", donor.net.state_dict(), (0.5,) * 3, (0.2,) * 3)
    with pytest.raises(ValueError, match="does not fit"):
        load_robustness_checkpoint(build_model("resnet18", 10, image_size=224), tmp_path / "r.ckpt")
    torch.save({"state_dict": {"conv.weight": torch.zeros(1)}}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="module.model"):
        load_robustness_checkpoint(build_model("resnet18", 10, image_size=224), tmp_path / "other.ckpt")


def test_load_torchvision_weights_and_corrupt_file(tmp_path):
    donor = build_model("resnet18", 1000, image_size=224)
    torch.save(donor.net.state_dict(), tmp_path / "resnet18.pth")
    model = load_torchvision_weights(build_model("resnet18", 10, image_size=224), tmp_path / "resnet18.pth")
    assert torch.equal(model.net.layer4[1].conv2.weight, donor.net.layer4[1].conv2.weight)
    data = (tmp_path / "resnet18.pth").read_bytes()
    (tmp_path / "bad.pth").write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match="could not be read safely"):
        load_torchvision_weights(build_model("resnet18", 10, image_size=224), tmp_path / "bad.pth")


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"model": Evil()}, tmp_path / "evil.ckpt")
    with pytest.raises(ValueError, match="could not be read safely"):
        load_robustness_checkpoint(build_model("resnet18", 10, image_size=224), tmp_path / "evil.ckpt")
