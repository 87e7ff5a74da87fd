"""The text track: lottery tickets in a pre-trained BERT (Chen et al., NeurIPS 2020), natural
and robust (adversarial finetuning in embedding space), transferred between text tasks."""
