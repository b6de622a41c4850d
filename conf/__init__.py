"""herdcount's shipped configuration files, found through :mod:`importlib.resources`:
class schemes (``*.yaml``) and spark-defaults files (``*.conf``)."""
