"""Errors as the OpenAI API shapes them: ``{"error": {"message", "type", "param", "code"}}``.

Every error a request can cause becomes a specific 4xx with a message that says what was expected,
what was found and what to do; anything unexpected is a 500 whose body says only that (the details
go to the log, never a traceback to the client).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from mmspeech.errors import (
    AudioError,
    CheckpointError,
    CheckpointNotFoundError,
    EmptyTextError,
    LanguageError,
    MissingDependencyError,
    MmspeechError,
)

logger = logging.getLogger(__name__)

_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
    504: "server_error",
}


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


# documented on every operation, so the OpenAPI document lists the errors clients really get
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "Invalid input: audio, language, model type, text",
        401: "Missing or wrong API key",
        404: "Unknown model, voice or endpoint",
        413: "Upload, audio duration or text over the server's limit",
        415: "Wrong content type",
        422: "A parameter out of its range or of the wrong type",
        429: "Queue full; retry after Retry-After seconds",
        503: "Server shutting down; retry after Retry-After seconds",
        504: "The request took longer than the server's timeout",
    }.items()
}


class APIError(Exception):
    """An error response: HTTP status, message, and the OpenAI ``code``/``param`` fields."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}


class BodyTooLarge(HTTPException):
    """A request body (sent without Content-Length, or lying about it) over the upload limit.

    An HTTPException, so that FastAPI's body parsing passes it on instead of turning it into a
    generic 400.
    """

    def __init__(self, limit: int):
        super().__init__(
            413,
            f"The request body is larger than this server's {limit / 1e6:.1f} MB limit; send a "
            "shorter or compressed file.",
        )


class BodyTimeout(HTTPException):
    """A request body that did not arrive within the server's body timeout (a stalled client)."""

    def __init__(self, timeout: float):
        super().__init__(
            408,
            f"The request body did not arrive within {timeout:g} s; send it in one go.",
            headers={"Connection": "close"},
        )


def error_body(status: int, message: str, code: str | None, param: str | None) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error"),
            "param": param,
            "code": code,
        }
    }


def error_response(error: APIError) -> JSONResponse:
    body = error_body(error.status, error.message, error.code, error.param)
    return JSONResponse(body, status_code=error.status, headers=error.headers)


def from_library_error(error: MmspeechError, param: str | None = None) -> APIError:
    """The 4xx (or 5xx) a library error stands for."""
    if isinstance(error, AudioError):
        return APIError(400, f"Invalid audio: {error}", "invalid_audio", param or "file")
    if isinstance(error, LanguageError):
        return APIError(400, str(error), "unsupported_language", param or "language")
    if isinstance(error, EmptyTextError):
        return APIError(400, str(error), "empty_text", param or "input")
    if isinstance(error, MissingDependencyError):
        return APIError(400, str(error), "unsupported_format", param or "response_format")
    if isinstance(error, CheckpointNotFoundError):  # its message names local paths: log it only
        logger.error("a file a served model needs cannot be found: %s", error)
        return APIError(
            503,
            "A file the model needs for this request is not available to this server now "
            "(offline, or not downloaded); the server log has the details.",
            "model_unavailable",
            "model",
        )
    if isinstance(error, CheckpointError):
        logger.error("a served checkpoint is broken: %s", error)
        return APIError(500, "The model could not be loaded; see the server log.", "model_error")
    return APIError(400, str(error), "invalid_request", param)


def _validation_message(error: RequestValidationError) -> tuple[str, str | None]:
    problems = []
    param = None
    for item in error.errors()[:5]:
        location = [str(part) for part in item.get("loc", ()) if part not in ("body", "query")]
        name = ".".join(location) or "body"
        param = param or name
        problems.append(f"{name}: {item.get('msg', 'invalid value')}")
    return "Invalid request: " + "; ".join(problems), param


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception to an OpenAI-shaped JSON error."""

    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(MmspeechError)
    async def library_error(request: Request, error: MmspeechError) -> JSONResponse:
        return error_response(from_library_error(error))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(error)
        return error_response(APIError(422, message, "invalid_value", param))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        message = str(error.detail) if error.detail else "HTTP error"
        if error.status_code == 404:
            message = f"No such endpoint: {request.method} {request.url.path}."
        code = {
            404: "not_found",
            405: "method_not_allowed",
            408: "request_timeout",
            413: "request_too_large",
        }.get(error.status_code)
        headers = dict(error.headers) if error.headers else None
        return error_response(APIError(error.status_code, message, code, headers=headers))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(
            APIError(500, "Internal server error; the server log has the details.", "server_error")
        )
