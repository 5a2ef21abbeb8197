"""The package version (pyproject.toml says the same), where the modules that record it can import it
without importing the package's top (which loads the library API)."""

__version__ = "0.1.0"
