"""The package version, in a leaf module so that submodules (checkpoint metadata, ``adasym
--version``) can read it without importing the top-level package that imports them."""

__version__ = "0.1.0"
