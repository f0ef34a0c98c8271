"""Data sources of the course: :mod:`s3lib.data.clips` (bundled mp4 clips)."""
