"""HTTP <-> backend: the route table, validation against botocore models, responses."""

from .host_check import OwnHostOnly
from .responses import render_error, unknown_operation
from .urls import routes

__all__ = ["OwnHostOnly", "render_error", "routes", "unknown_operation"]
