"""POST|GET|HEAD /webhooks/{source}: verify, normalise, publish (docs/webhooks.md)."""

from __future__ import annotations

import base64
import binascii
import json

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.logging import correlation_paths
from segmentation import bootstrap
from segmentation.sources.request import WebhookRequest

logger = Logger()
app = APIGatewayHttpResolver()
METHODS = ["POST", "GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _json(status: int, body: dict) -> Response:
    return Response(status, content_type="application/json", body=json.dumps(body))


@app.route("/webhooks/<source>", method=METHODS)
def webhook(source: str) -> Response:
    event = app.current_event
    try:
        body = base64.b64decode(event.body or "", validate=True) if event.is_base64_encoded else (event.body or "").encode()
    except (binascii.Error, ValueError):
        return _json(400, {"error": "MalformedPayloadError", "reason": "body is not valid base64"})
    request = WebhookRequest(
        method=event.request_context.http.method.upper(),
        source=source,
        body=body,
        headers={k.lower(): v for k, v in (event.headers or {}).items()},
        query=event.query_string_parameters or {},
    )
    reply = bootstrap.webhook_ingest().handle(request)
    # Logs name the source and outcome, never the body or headers (PII, signatures).
    extra = {"source": source, "status": reply.status, "body_bytes": len(body), "delivery": reply.delivery}
    if isinstance(reply.body, dict) and "duplicate" in reply.body:  # WebhookDuplicateAnswer=on
        extra["duplicate"] = reply.body["duplicate"]
    logger.info("webhook", extra=extra)
    if isinstance(reply.body, str):  # a handshake answered as the provider expects
        return Response(reply.status, content_type=reply.content_type, body=reply.body)
    return _json(reply.status, reply.body)


@app.not_found
def unmatched(exc: NotFoundError) -> Response:
    # API Gateway routed the request to /webhooks/{source}, but the resolver's route pattern does not
    # take every character (a quote, NUL, a backslash... in {source}): the same 404 as an unknown
    # source, not a fault (a provider retries a 503 forever, and the fault log wakes someone up).
    source = (app.current_event.path_parameters or {}).get("source")
    if source is not None:
        return webhook(source)
    return _json(404, {"error": "not_found", "reason": "no such route"})


@app.exception_handler(Exception)
def fault(exc: Exception) -> Response:
    # A fault on our side (storage, bus, configuration): the provider retries a 503.
    logger.exception("webhook fault")
    return _json(503, {"error": "ServiceUnavailable", "reason": "temporary fault; the delivery was not accepted"})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict, context) -> dict:
    ingest = bootstrap.webhook_ingest()
    if str(event.get("source", "")).startswith("aws.partner/shopify.com"):
        result = ingest.handle_shopify_eventbridge(event)
        logger.info("shopify eventbridge", extra={k: v for k, v in result.items() if k != "reason"})
        return result
    return app.resolve(event, context)
