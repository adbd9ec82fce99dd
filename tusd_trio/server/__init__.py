"""The Trio I/O layer: h11 connections, the request handler, the supervisor."""

from ._app import Server as Server, serve as serve

__all__ = ["Server", "serve"]
