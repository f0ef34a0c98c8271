"""s3lib: the library behind the S3-CNN course (self-supervised segmentation by grouping flow).

Modules, one idea each (the notebook that explains each is named in its docstring):

- :mod:`s3lib.setup`    -- ``reproducible(seed)``: seeds, thread count, deterministic kernels.
- :mod:`s3lib.check`    -- ``expect(name, value, target, tol)``: the notebooks' tolerance checks.
- :mod:`s3lib.config`   -- the one quick-mode switch (``S3_QUICK``) and the data root.
- :mod:`s3lib.flow`     -- ``.flo`` I/O, the Middlebury colour wheel, OpenCV flow, warping.
- :mod:`s3lib.metrics`  -- matched mIoU, (FG-)ARI, average precision (sklearn and VOC07 styles).
- :mod:`s3lib.viz`      -- segment colours, overlays, flow pictures with a colour wheel.
- :mod:`s3lib.analysis` -- scores and baselines the notebooks print (speed splits, stripes, fits).
- :mod:`s3lib.widgets`  -- ipywidgets builders used by the notebooks (tested without a browser).
- :mod:`s3lib.motion`   -- per-segment motion models: basis, normal equations, solve, residuals.
- :mod:`s3lib.grouping` -- eq. (1)-(2): likelihood of a segmentation, fitted or integrated.
- :mod:`s3lib.losses`   -- the affine, entropy and marginal-likelihood motion losses.
- :mod:`s3lib.freemask` -- segmenting one flow field by gradient descent on free masks.
- :mod:`s3lib.models`   -- the segmentation network (a small U-Net) and safe checkpoints.
- :mod:`s3lib.fcn`      -- the paper's FCN-8s/VGG-16, batch-norm folding, the VGG-16 classifier.
- :mod:`s3lib.train`    -- the one training loop (cube, video, Sintel), evaluation.
- :mod:`s3lib.pretrain` -- S3 pre-training of FCN-8s/VGG-16 (``s3 pretrain``, torchrun / DDP).
- :mod:`s3lib.finetune` -- the VOC 2007 fine-tuning protocol and mAP (``s3 finetune``).
- :mod:`s3lib.transfer` -- notebook 07's transfer grid, its summary and the rule for a claim.
- :mod:`s3lib.segment`  -- applying a checkpoint to images and videos (contact sheets).
- :mod:`s3lib.download` -- fetching MPI-Sintel / PASCAL VOC 2007: resumable, verified, safe.
- :mod:`s3lib.student`  -- student copies of the notebooks (``make student``): nbgrader's markers.
- :mod:`s3lib.book`     -- the course as a static website (``make book``), no network needed.
- :mod:`s3lib.data`     -- data sources: bundled clips, synthetic flow, the cube, video caches,
  MPI-Sintel, in-memory frame pairs, the shapes world, PASCAL VOC 2007.
"""

__version__ = "0.1.0"
