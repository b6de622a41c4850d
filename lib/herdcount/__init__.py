"""herdcount: count animals in aerial survey photos, in parallel with Spark."""

__version__ = "0.1.0"
