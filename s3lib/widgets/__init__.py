"""Widget builders of the notebooks, one module per notebook; each returns the widget and its parts.

Controls and pictures only: the numbers an explorer shows are computed by :mod:`s3lib.analysis`
(or the modules it calls), and every explorer derives from one base class,
:class:`s3lib.widgets._controls.Explorer` (observers that redraw, several controls set with one
redraw, ``show(...)`` returning the summary line).

The callbacks are plain methods, so pytest can set a control's value and check what the
observer updated, and a notebook cell after the widget can call the same method at fixed values
(its output is then checked by nbval). The widgets are also driven in a real browser by
``tests/test_browser.py``.

- :func:`flow_explorer` (``00_overview``): frame pairs, gap and flow method of a clip.
- :func:`boundary_explorer` (``01_grouping_model``): strip segmentations scored by eq. (1)-(2),
  boundary / segments L / softness / noise / the model's sigma.
- :func:`freemask_explorer` (``02_affine_motion_loss``): free-mask segmentation, L / robust / noise.
- :func:`entropy_explorer` (``03_entropy_motion_loss``): speed histograms, bins / noise.
- :func:`cube_explorer` (``04_cube_toy``): segments, rebuilt flow and residuals along a held-out
  cube sequence, frame / segment.
- :func:`segment_fit_explorer` (``05_sintel``): one segment's affine fit and residual on a frame
  of an animated film, frame / segment.
- :func:`video_explorer` (``06_real_video_entropy``): segments and speed histograms of real
  footage, bins / segments / frame.
- :func:`feature_explorer` (``07_voc07_transfer``): the most active channels of a VGG block
  for pre-trained and random trunks, scene / block.
"""

from .affine import FreeMaskExplorer, freemask_explorer
from .cube import CubeExplorer, cube_explorer
from .entropy import EntropyExplorer, entropy_explorer
from .grouping import BoundaryExplorer, boundary_explorer
from .overview import FlowExplorer, FlowPairView, flow_explorer, render_flow_pair
from .sintel import SegmentFitExplorer, segment_fit_explorer
from .transfer import FeatureExplorer, feature_explorer
from .video import VideoExplorer, video_explorer

__all__ = ["BoundaryExplorer", "CubeExplorer", "EntropyExplorer", "FlowExplorer", "FlowPairView",
           "FreeMaskExplorer", "boundary_explorer", "cube_explorer", "entropy_explorer", "flow_explorer",
           "freemask_explorer", "render_flow_pair", "SegmentFitExplorer", "segment_fit_explorer",
           "VideoExplorer", "video_explorer", "FeatureExplorer", "feature_explorer"]
