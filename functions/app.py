"""booklogr-tasks on Chalice: the HTTP API and one Lambda function per task type.

Handlers are thin: authenticate, call one function of booklogr_tasks.http.routes, map its result (or
its typed error) to a response. All logic, SQL and AWS calls live in the package.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from booklogr_tasks.core.errors import ApiError, ConnectionLost, NotFound
from booklogr_tasks.core.observability import log_context, logger, tracer
from booklogr_tasks.core.settings import Settings, get_settings
from booklogr_tasks.http import cors, files, schedules
from booklogr_tasks.http import routes as api
from booklogr_tasks.http.auth import authenticate
from booklogr_tasks.http.serving import (
    SEND_FILE_HEADER,
    body_limit,
    creates_task,
    log_request,
    public,
    received_upload,
    streamed_upload,
    under_server,
    verified_user,
)
from booklogr_tasks.jobs import REGISTRY
from booklogr_tasks.worker.runner import run_task
from booklogr_tasks.worker.scheduler import run_schedules
from chalice import Chalice, Rate, Response
from chalice.app import Request
from pydantic import BaseModel

# The Powertools logger is named after the service, which is also the app's name: Chalice must
# not reconfigure that logger (it would set it to ERROR and add a plain-text handler). Debug
# stays off (the default; its setter would reset the level too): no traceback reaches a client.
app = Chalice(app_name="booklogr-tasks", configure_logs=False)
# The one binary media type of the API: uploads (POST /v1/files) hold files, which API Gateway
# must pass through as bytes. No answer is binary (exports are UTF-8 text; S3 serves them on
# Lambda). Chalice matches its default list (audio, images, archives) against content types
# several times per request, a cost worth avoiding (bench/README.md).
app.api.binary_types = ["multipart/form-data"]

View = Callable[..., Response]


# --- plumbing --------------------------------------------------------------------------------


def _json(status: int, body: BaseModel | dict[str, Any], **headers: str) -> Response:
    # A model becomes its JSON text here, once (pydantic writes it; Chalice leaves text alone).
    data = body.model_dump_json() if isinstance(body, BaseModel) else body
    # API Gateway would default to JSON; say it, so every face answers the same.
    return Response(
        body=data, status_code=status, headers={"Content-Type": "application/json", **headers}
    )


def _error(exc: ApiError) -> Response:
    return _json(exc.status, exc.body(), **exc.headers)


def _request() -> Request:
    request = app.current_request
    assert request is not None
    return request


def _caller() -> tuple[Settings, int]:
    """The settings (read per request, cached) and the authenticated user id (the server's
    check of this request's token when it made one before reading the body)."""
    settings = get_settings()
    authorization = _request().headers.get("authorization")
    user = verified_user(authorization)
    return settings, authenticate(authorization, settings) if user is None else user


def _query() -> dict[str, str]:
    return dict(_request().query_params or {})


def handled(view: View) -> View:
    """Typed errors become their responses; anything else is logged and becomes a JSON 500."""

    @functools.wraps(view)
    def handle(**params: str) -> Response:
        try:
            try:
                return view(**params)
            except ConnectionLost:
                # The database dropped the connection before anything was committed (a restart,
                # a terminated backend): once more, on a fresh connection.
                return view(**params)
        except ApiError as exc:
            return _error(exc)
        except Exception:
            logger.exception("unhandled error", extra={"path": _request().path})
            return _error(ApiError("an unexpected error occurred; it has been logged"))

    return handle


# Chalice answers some requests itself (405, 415, ...) as {"Code", "Message"}.
_CHALICE_CODES = {
    "BadRequest": "bad_request",
    "BadRequestError": "bad_request",
    "MethodNotAllowedError": "method_not_allowed",
    "UnsupportedMediaType": "unsupported_media_type",
    "InternalServerError": "internal",
}


def _uniform(request: Request, response: Response) -> Response:
    body = response.body
    if isinstance(body, dict) and set(body) == {"Code", "Message"}:
        code = _CHALICE_CODES.get(str(body["Code"]), str(body["Code"]).lower())
        message = str(body["Message"])
        if response.status_code == 415:
            # Chalice's text echoes the request's Content-Type; say what to send instead.
            accepted = " or ".join(_route_methods(request)[request.method].content_types)
            message = f"this route accepts bodies of Content-Type {accepted}"
        response.body = {"error": code, "message": message}
        response.headers = {**response.headers, "Content-Type": "application/json"}
    return response


def _route_methods(request: Request) -> dict[str, Any]:
    """The app's route entries (method → RouteEntry) of the route this request matched."""
    return dict(app.routes.get(request.path, {}))


@functools.lru_cache(maxsize=64)
def _allowed_methods(route: str) -> str:
    """The methods a route answers, for its CORS headers (the route table never changes once
    the app is loaded; `route` is the matched pattern, e.g. /v1/tasks/{id})."""
    return cors.allowed_methods(app.routes.get(route, {}))


def _with_cors(request: Request, response: Response) -> Response:
    methods = _allowed_methods(request.path)
    origins = get_settings().cors_origin_list
    headers = cors.cors_headers(request.headers.get("origin"), origins, methods)
    response.headers = {**headers, **response.headers}
    return response


def _subsegment(name: str) -> AbstractContextManager[Any]:
    """A trace subsegment; none when tracing is off (outside Lambda, or switched off), where the
    X-Ray SDK would still build a throwaway one per request."""
    if tracer.disabled:
        return contextlib.nullcontext()
    return tracer.provider.in_subsegment(name)


@app.middleware("http")
def observe(request: Request, get_response: Callable[[Request], Response]) -> Response:
    """CORS headers on every answer; one log line, one trace subsegment and error metrics per
    request. Under `booklogr-tasks api` the server writes the log line (it also answers requests
    that never reach the app); metrics go out only on Lambda, where CloudWatch reads them."""
    started = time.perf_counter()
    route = f"{request.method} {request.path}"
    with log_context(route=route), _subsegment(f"## {route}") as subsegment:
        response = _with_cors(request, _uniform(request, get_response(request)))
        if subsegment is not None:
            subsegment.put_annotation("status", response.status_code)
        if response.status_code >= 400:
            api.count("ApiErrors", status=str(response.status_code))
        if not under_server():
            log_request(response.status_code, started)
    return response


@app.middleware("pure_lambda")
def observe_task_function(event: Any, get_response: Callable[[Any], Any]) -> Any:
    with log_context(function=event.context.function_name):
        return get_response(event)


# --- routes ----------------------------------------------------------------------------------


@app.route("/v1/tasks", methods=["POST"])
@handled
@creates_task
def create_task() -> Response:
    settings, user = _caller()
    request = _request()
    accepted = api.create_task_request(
        settings, user, request.raw_body, request.headers.get("content-length")
    )
    return _accepted(accepted)


@app.route("/v1/tasks", methods=["GET"])
@handled
def list_tasks() -> Response:
    settings, user = _caller()
    return _json(200, api.list_tasks(settings, user, _query()))


@app.route("/v1/tasks/{id}", methods=["GET"])
@handled
def get_task(id: str) -> Response:
    settings, user = _caller()
    task = api.task_status(settings, user, id)
    if task.finished:
        return _json(200, task)
    return _json(200, task, **{"Retry-After": str(api.RETRY_AFTER_SECONDS)})


@app.route("/v1/tasks/{id}/retry", methods=["POST"])
@handled
def retry_task(id: str) -> Response:
    settings, user = _caller()
    return _accepted(api.retry(settings, user, id))


@app.route("/v1/exports", methods=["GET"])
@handled
def list_exports() -> Response:
    settings, user = _caller()
    return _json(200, api.list_exports(settings, user, _query()))


@app.route("/v1/exports/{format}/{id}", methods=["GET"])
@handled
def download_export(format: str, id: str) -> Response:
    settings, user = _caller()
    return _download(api.open_export(settings, user, format, id))


# BookLogr's own file routes (its web app lists, downloads and uploads through them).
@app.route("/v1/files", methods=["GET"])
@handled
def list_files() -> Response:
    settings, user = _caller()
    listed = [f.model_dump(mode="json") for f in files.list_files(settings, user)]
    return Response(body=listed, status_code=200, headers={"Content-Type": "application/json"})


@app.route("/v1/files/{filename}", methods=["GET"])
@handled
def download_file(filename: str) -> Response:
    settings, user = _caller()
    return _download(files.open_file(settings, user, filename))


@app.route("/v1/files", methods=["POST"], content_types=["multipart/form-data"])
@handled
@creates_task
@streamed_upload
@body_limit("max_upload_body_bytes")
def upload_file() -> Response:
    settings, user = _caller()
    upload = received_upload()  # under `booklogr-tasks api`: already in the store
    if upload is not None:
        answer = files.import_upload(settings, user, upload)
    else:
        request = _request()
        answer = files.upload_import(
            settings, user, request.headers.get("content-type"), request.raw_body
        )
    if answer.finished:
        return _json(200, answer)
    return _json(
        202,
        answer,
        Location=f"/v1/tasks/{answer.task_id}",
        **{"Retry-After": str(api.RETRY_AFTER_SECONDS)},
    )


@app.route("/v1/uploads", methods=["POST"])
@handled
def direct_upload() -> Response:
    settings, user = _caller()
    return _json(201, files.direct_upload(settings, user))


@app.route("/v1/schedules", methods=["GET"])
@handled
def list_schedules() -> Response:
    settings, user = _caller()
    return _json(200, schedules.list_schedules(settings, user))


@app.route("/v1/schedules/{format}", methods=["PUT"])
@handled
def put_schedule(format: str) -> Response:
    settings, user = _caller()
    return _json(200, schedules.put_schedule(settings, user, format, _request().raw_body))


@app.route("/v1/schedules/{format}", methods=["DELETE"])
@handled
def delete_schedule(format: str) -> Response:
    settings, user = _caller()
    schedules.delete_schedule(settings, user, format)
    return Response(body="", status_code=204)


def _download(found: api.ExportFile | api.ExportLink) -> Response:
    """A stored file as an attachment, or (S3) a redirect to a short-lived link to it."""
    if isinstance(found, api.ExportLink):
        return Response(body="", status_code=302, headers={"Location": found.url})
    return _file_response(found.path, found.filename, found.content_type)


@app.route("/healthz", methods=["GET"])
@handled
@public
def healthz() -> Response:
    return _json(200, api.health(get_settings()))


@app.route("/openapi.json", methods=["GET"])
@handled
@public
def openapi() -> Response:
    return _json(200, api.openapi_document())


def _file_response(path: Path, filename: str, content_type: str) -> Response:
    """A file of this machine's disk as an attachment. Under `booklogr-tasks api` the server
    streams it in chunks (the path travels in an internal header it removes); elsewhere (the
    Chalice test client, `chalice local`) it is read here."""
    headers = {
        "Content-Type": content_type,
        "Content-Disposition": f'attachment; filename="{filename}"',
    }
    if under_server():
        return Response(body="", status_code=200, headers={**headers, SEND_FILE_HEADER: str(path)})
    try:
        data = path.read_bytes()
    except OSError:
        raise NotFound("the file is no longer available") from None
    # Exports are UTF-8 text; a str body needs no binary-media setup in API Gateway.
    return Response(body=data.decode("utf-8"), status_code=200, headers=headers)


def _accepted(accepted: api.Accepted) -> Response:
    return _json(
        202,
        accepted,
        Location=f"/v1/tasks/{accepted.task_id}",
        **{"Retry-After": str(api.RETRY_AFTER_SECONDS)},
    )


# --- one Lambda function per task type (TASK_INVOKER=lambda invokes them asynchronously) ------


def _task_function(task_type: str) -> Callable[[Any, Any], dict[str, Any]]:
    def run(event: Any, context: Any) -> dict[str, Any]:
        task_id = api.invocation_task_id(event)
        return {"task_id": task_id, "task_type": task_type, "status": run_task(task_id)}

    run.__name__ = f"run_{task_type}"
    return run


# Each handler must be a module attribute: the deployed function's Handler is `app.run_<type>`.
for _task_type in sorted(REGISTRY):
    _handler = _task_function(_task_type)
    globals()[_handler.__name__] = app.lambda_function(name=_task_type)(_handler)


# --- the scheduler: due export schedules become tasks (deployed: an EventBridge schedule) -----

# The listener's scheduler ticks every few seconds; on AWS this function runs as often as
# EventBridge schedules allow cheaply, and the same code makes one task per due schedule.
SCHEDULER_RATE_MINUTES = 2


@app.schedule(Rate(SCHEDULER_RATE_MINUTES, unit=Rate.MINUTES), name="scheduler")
def run_scheduler(event: Any) -> dict[str, Any]:
    run = run_schedules(get_settings())
    return {"created": [t.id for t in run.created], "waiting": run.waiting}


# --- preflights: an OPTIONS route beside every route above (keep this block last) ---------------
# API Gateway sends a browser's preflight to the app only when the path has an OPTIONS method.
# Under `booklogr-tasks api` the server answers the same way.


@public
def _preflight(**params: str) -> Response:
    request = _request()
    methods = cors.allowed_methods(_route_methods(request))
    origins = get_settings().cors_origin_list
    headers = cors.preflight_headers(request.headers.get("origin"), origins, methods)
    return Response(body="", status_code=204, headers=headers)


for _path, _methods in list(app.routes.items()):
    if "OPTIONS" not in _methods:
        app.route(_path, methods=["OPTIONS"], content_types=[])(_preflight)
