"""Every error the server sends has OpenAI's shape, {"error": {"message", "type", "param", "code"}}:
its own refusals, FastAPI's routing errors (404, 405) and, as a 500, anything unforeseen."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

_KINDS = {401: "authentication_error", 404: "invalid_request_error", 413: "invalid_request_error",
          429: "rate_limit_error", 503: "service_unavailable", 504: "timeout"}


class HTTPError(Exception):
    """A refusal with its status, OpenAI error type and (when one field is to blame) that field."""

    def __init__(self, status: int, message: str, kind: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param
        self.kind = kind or _KINDS.get(status, "invalid_request_error" if status < 500 else "server_error")


def error_body(error: HTTPError) -> dict:
    return {"error": {"message": error.message, "type": error.kind, "param": error.param, "code": error.status}}


def error_response(error: HTTPError) -> JSONResponse:
    # A refused request may leave body bytes unread on the connection: close it rather than parse them.
    headers = {"Connection": "close"} if error.status in (408, 413) else None
    return JSONResponse(error_body(error), status_code=error.status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPError)
    async def refused(_: Request, error: HTTPError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(StarletteHTTPException)
    async def routing(request: Request, error: StarletteHTTPException) -> JSONResponse:
        message = f"{error.detail}: {request.method} {request.url.path}"
        return error_response(HTTPError(error.status_code, message))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(HTTPError(400, str(error)))

    @app.exception_handler(Exception)
    async def fault(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unexpected error serving %s %s", request.method, request.url.path)
        return error_response(HTTPError(500, f"internal server error ({type(error).__name__})"))
