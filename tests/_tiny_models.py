"""A tiny CNN on sklearn's 8x8 digits, trained in a few seconds, for attack tests."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits


class TinyCNN(nn.Module):
    """Pixels in [0, 1] -> logits; normalises internally, has a batch-norm layer."""

    def __init__(self, num_classes: int = 10, mean: float = 0.3, std: float = 0.4):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.fc = nn.Linear(32 * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.conv2(x))
        return self.fc(x.flatten(1))


def digits(seed: int = 0, n_test: int = 360) -> tuple[torch.Tensor, ...]:
    """(x_train, y_train, x_test, y_test): X/16 as [N, 1, 8, 8] floats, a seeded split."""
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    x, y = x[perm], y[perm]
    return x[n_test:], y[n_test:], x[:n_test], y[:n_test]


def train_tiny_cnn(x: torch.Tensor, y: torch.Tensor, *, epochs: int = 6, seed: int = 0,
                   precision: str = "fp32") -> TinyCNN:
    """Adam, batch 64, a fixed seed, in fp32 or under bf16 autocast; returns the model in
    eval mode (its weights are fp32 either way)."""
    torch.manual_seed(seed)
    model = TinyCNN(mean=x.mean().item(), std=x.std().item())
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(64):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = F.cross_entropy(model(x[idx]).float(), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.zero_grad(set_to_none=True)
    return model.eval()
