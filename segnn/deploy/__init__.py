"""Exported force fields: ``segnn export`` writes a ``.pt2`` (``export.py``, needs the model
code); :class:`ExportedModel` and :class:`ExportedCalculator` run it with torch, ASE and vesin
only (``exported.py``), see docs/deployment.md."""

from segnn.deploy.exported import ExportedCalculator, ExportedModel, ExportError

__all__ = ["ExportError", "ExportedCalculator", "ExportedModel"]
