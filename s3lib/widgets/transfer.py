"""The feature explorer of ``notebooks/07_voc07_transfer.ipynb``: which channels fire?

For a test scene of the shapes world and a VGG block (1-5), the explorer shows, for each of
several trunks (e.g. S3-pre-trained and random, both with batch norm folded), the six channels
of that block with the largest mean activation, and under the picture how much more those
channels fire on objects than on the background (:func:`s3lib.transfer.channel_objectness`:
1 is indifferent). A trunk that learnt to group by motion should have channels that light up
on objects, whatever their texture.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ._controls import Explorer
from ..transfer import block_features, channel_objectness, top_channels


@dataclass
class FeatureExplorer(Explorer):
    """Controls ``scene`` (IntSlider) and ``block`` (IntSlider 1-5); ``image`` (the scene and
    each trunk's top channels), ``info`` (Label), ``widget`` (everything)."""

    models: dict[str, torch.nn.Module]
    images: torch.Tensor
    layers: torch.Tensor
    scene: object = field(init=False)
    block: object = field(init=False)
    image: object = field(init=False)
    info: object = field(init=False)
    widget: object = field(init=False)
    scores: dict[str, float] = field(init=False, default_factory=dict)
    _cache: dict = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        import ipywidgets as w

        style = {"description_width": "initial"}
        self.scene = w.IntSlider(value=0, min=0, max=len(self.images) - 1, description="scene",
                                 continuous_update=False, style=style)
        self.block = w.IntSlider(value=3, min=1, max=5, description="block",
                                 continuous_update=False, style=style)
        self._assemble((self.scene, self.block))

    def update(self) -> str:
        key = (self.scene.value, self.block.value)
        if key not in self._cache:
            self._cache[key] = self._compute(*key)
        self.scores, png = self._cache[key]
        self.image.value = png
        parts = ", ".join(f"{name} {score:.2f}" for name, score in self.scores.items())
        self.info.value = (f"scene {key[0]}, block {key[1]}: top-6 channels' activation on "
                           f"objects / overall: {parts}")
        return self.info.value

    def _compute(self, scene: int, block: int) -> tuple[dict[str, float], bytes]:
        import matplotlib.pyplot as plt

        from ..viz import figure_to_png, show_image

        image, layers = self.images[scene], self.layers[scene]
        fig, axes = plt.subplots(len(self.models), 7, figsize=(12, 1.9 * len(self.models)),
                                 layout="constrained", squeeze=False)
        scores = {}
        for row, (name, model) in enumerate(self.models.items()):
            feats = block_features(model, image[None], block)[0]
            top = top_channels(feats)
            scores[name] = float(channel_objectness(feats[top], layers).mean())
            show_image(axes[row, 0], image, "scene" if row == 0 else None)
            axes[row, 0].set_ylabel(name)
            for j, c in enumerate(top.tolist()):
                axes[row, j + 1].imshow(feats[c].numpy(), cmap="magma")
                axes[row, j + 1].set_title(f"{name}: ch {c}", fontsize=8)
                axes[row, j + 1].axis("off")
        fig.suptitle(f"block {block}: the six most active channels")
        return scores, figure_to_png(fig)

    def show(self, scene: int, block: int) -> str:
        """Set both controls (one redraw) and return the summary line."""
        if not 0 <= scene < len(self.images):
            raise ValueError(f"scene: expected 0 to {len(self.images) - 1}, got {scene!r}")
        if not 1 <= block <= 5:
            raise ValueError(f"block: expected 1 to 5, got {block!r}")
        return self._set_controls((self.scene, scene), (self.block, block))


def feature_explorer(models: dict[str, torch.nn.Module], images: torch.Tensor,
                     layers: torch.Tensor, scene: int = 0, block: int = 3) -> FeatureExplorer:
    """Build the feature explorer of ``07_voc07_transfer.ipynb``.

    Args:
        models: name -> trunk (:class:`~s3lib.fcn.FCN8s` or :class:`~s3lib.fcn.VGG16Classifier`).
        images: ``(N, 3, H, W)`` scenes in [0, 1]; layers: ``(N, H, W)`` (0 background).
        scene, block: the controls' first values.
    """
    if images.ndim != 4 or layers.shape != (images.shape[0], *images.shape[-2:]):
        raise ValueError(f"images (N, 3, H, W) and layers (N, H, W) expected, got "
                         f"{tuple(images.shape)} and {tuple(layers.shape)}")
    explorer = FeatureExplorer(models, images, layers)
    explorer.show(scene, block)
    return explorer
