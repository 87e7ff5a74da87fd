"""The image-prior track: a deep image prior at random initialisation, masks at initialisation
(learned by Optimal Eye Surgeon, magnitude, random, IMP) and denoising runs (E12).

Importing any module of this package registers the track ``prior`` and the scheme ``oes``.
"""

from rtstudy.prior import track as _track  # noqa: F401
