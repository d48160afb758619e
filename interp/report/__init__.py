"""The audit report: provenance, plots, and the HTML + JSON renderers."""
