"""The Spark jobs' command-line mains (extract, count, manifest, clean): ``herdcount VERB``
runs them, and so do the few-line files in ``jobs/`` under ``spark-submit``."""
