"""fastrnn's version (one place: the package, files and formats read it)."""
__version__ = "0.1.0"
