"""rtstudy: robust lottery tickets in transfer learning, as a notebook-first study."""

__version__ = "0.1.0"
