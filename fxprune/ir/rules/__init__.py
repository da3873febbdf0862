"""Importing this package registers every built-in op rule."""
from . import conv, elementwise, indexing, matmul, norm, pool, shape, wrapped  # noqa: F401
