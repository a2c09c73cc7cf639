"""HTTP <-> backend: the route table, validation against botocore models, the protocol, responses."""

from .host_check import OwnHostOnly
from .protocol import RenderUnexpected, render_error, unknown_operation
from .urls import routes

__all__ = ["OwnHostOnly", "RenderUnexpected", "render_error", "routes", "unknown_operation"]
