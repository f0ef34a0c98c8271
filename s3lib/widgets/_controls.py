"""The explorers' one base class: observers that redraw, several controls set with one redraw."""

from __future__ import annotations


class Explorer:
    """Base of the seven explorer dataclasses of :mod:`s3lib.widgets`.

    A subclass creates its controls in ``__post_init__`` and hands them, row by row, to
    :meth:`_assemble`, which adds ``image`` (an ``ipywidgets.Image`` for PNG bytes) and
    ``info`` (a ``Label``), lays everything out as ``widget`` (a ``VBox``: the rows, the
    picture, the line), keeps the controls in ``controls`` and draws once. The subclass
    implements

    - ``update()``: compute (or reuse) what the current control values show, put the picture
      in ``image`` and the summary line in ``info``;
    - ``show(...)``: check its arguments (a slider would silently clamp a value outside its
      range; ``show`` raises ``ValueError``), then ``return self._set_controls(...)``: the
      controls are set at those values with one redraw, and the summary line is returned, so
      a notebook cell after the widget prints what a reader would see.

    Every control's ``value`` is observed by :meth:`_on_change` (looked up when the explorer is
    built, so a test can replace it on the class to break the callback on purpose), which first
    lets :meth:`_constrain` keep dependent controls consistent and then redraws, unless a
    :meth:`_set_controls` call is under way.
    """

    _quiet: bool = False

    def update(self):
        """Redraw for the current control values (each explorer defines it)."""
        raise NotImplementedError

    def _assemble(self, *rows: tuple) -> None:
        """Lay out ``rows`` of controls (a row of one control as itself, longer rows as an
        ``HBox``), then ``image`` and ``info``; observe every control; draw once."""
        import ipywidgets as w

        self.controls = tuple(c for row in rows for c in row)
        self.image = w.Image(format="png", layout=w.Layout(max_width="100%"))
        self.info = w.Label()
        for control in self.controls:
            control.observe(self._on_change, names="value")
        boxes = [row[0] if len(row) == 1 else w.HBox(list(row)) for row in rows]
        self.widget = w.VBox([*boxes, self.image, self.info])
        self.update()

    def _on_change(self, change) -> None:
        """The observer of every control: constrain, then redraw (unless setting quietly)."""
        self._constrain(change)
        if not self._quiet:
            self.update()

    def _constrain(self, change) -> None:
        """Adjust controls that depend on the one that changed (runs while setting quietly
        too); none by default."""

    def _set_controls(self, *assignments: tuple[object, object]) -> str:
        """Set ``(control, value)`` pairs in order, then redraw once; returns the summary line
        (``info.value``)."""
        self._quiet = True
        try:
            for control, value in assignments:
                control.value = value
        finally:
            self._quiet = False
        self.update()
        return self.info.value
