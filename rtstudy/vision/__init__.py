"""The image-classification track: data, models, attacks, the training loop, channel slimming."""
