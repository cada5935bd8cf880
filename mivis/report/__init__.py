"""The generated study report: tables and SVG figures from sweep results."""
from .findings import build_report

__all__ = ["build_report"]
