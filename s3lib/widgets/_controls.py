"""What the explorers share: observers that redraw, and setting several controls at once."""

from __future__ import annotations


class QuietControls:
    """Mixin for the explorer dataclasses: ``_on_change`` redraws (``self.update()``) unless a
    :meth:`_set_controls` call is under way, which sets several controls with one redraw."""

    _quiet: bool = False

    def _on_change(self, change) -> None:
        if not self._quiet:
            self.update()

    def _set_controls(self, *assignments: tuple[object, object]) -> str:
        """Set ``(control, value)`` pairs in order, then redraw once; returns ``update()``'s line."""
        self._quiet = True
        try:
            for control, value in assignments:
                control.value = value
        finally:
            self._quiet = False
        return self.update()
