"""Checks of what a user gives `segctl`, each failing with a usage error (a SystemExit message that
says what to give; cli.main prints it and exits 2): numeric options, the kind of a Lambda event for
`local invoke`, and template parameter values as CloudFormation would check them."""

from __future__ import annotations

import argparse
import re

from .template import Template


def bounded_int(low: int, high: int | None = None, what: str = "a number"):
    """An argparse type: an integer in [low, high], else a usage error (exit 2) saying the range."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            span = f"from {low} to {high}" if high is not None else f"{low} or more"
            raise argparse.ArgumentTypeError(f"{value} is out of range: give {what} {span}")
        return value
    return parse


#: what each kind of event source hands a function, and how to recognise it (segctl local invoke)
EVENT_KINDS = {
    "HttpApi": ("an API Gateway HTTP API event (payload 2.0: version, routeKey, rawPath, requestContext, "
                "headers, body), e.g. events/shopify/orders-create.json",
                lambda e: isinstance(e, dict) and isinstance(e.get("requestContext"), dict) and "rawPath" in e),
    "SQS": ("an SQS batch ({\"Records\": [{\"messageId\", \"body\", ...}]}), "
            "e.g. events/profile/sqs-customer-event.json",
            lambda e: isinstance(e, dict) and isinstance(e.get("Records"), list) and bool(e["Records"])
            and all(isinstance(r, dict) and "body" in r and "messageId" in r for r in e["Records"])),
}


def check_event_kind(template: Template, function: str, event, path: str) -> None:
    """A usage error when ``event`` is not what ``function``'s event sources in template.yaml deliver."""
    spec = template.functions().get(function)
    if spec is None:
        raise SystemExit(f"segctl: no function {function!r} in {template.path}; functions: "
                         f"{', '.join(template.functions())}")
    if not isinstance(event, dict):
        raise SystemExit(f"segctl: {path}: a Lambda event is a JSON object, not a JSON {type(event).__name__}")
    kinds = {e.get("Type") for e in spec.events.values()} & set(EVENT_KINDS)
    if len(kinds) != 1:
        return  # a schedule, a direct invocation or Step Functions: any object
    (kind,) = kinds
    wanted, matches = EVENT_KINDS[kind]
    if not matches(event):
        hint = ""
        if kind == "HttpApi":
            hint = ("; a provider's payload (such as the files under events/<provider>/) is sent over HTTP to "
                    "`segctl local start-api`, signed as the provider signs it (docs/cli.md)")
        raise SystemExit(f"segctl: {path} is not an event {function} receives: it takes {wanted}{hint}")


def parameter_problem(template: Template, name: str, value: str) -> str | None:
    """What CloudFormation would refuse in ``value`` for the template's parameter ``name`` (its Type
    Number, MinValue/MaxValue, AllowedValues, AllowedPattern, MinLength/MaxLength), or None."""
    spec = template.doc.get("Parameters", {}).get(name) or {}
    allowed = [str(v) for v in spec.get("AllowedValues") or []]
    if allowed and value not in allowed:
        return f"{name} must be one of {', '.join(allowed)}"
    if spec.get("Type") == "Number":
        try:
            number = float(value)
        except ValueError:
            return f"{name} must be a number"
        low, high = spec.get("MinValue"), spec.get("MaxValue")
        if (low is not None and number < float(low)) or (high is not None and number > float(high)):
            return f"{name} must be from {low if low is not None else '-inf'} to {high if high is not None else 'inf'}"
    pattern = spec.get("AllowedPattern")
    if pattern and not re.fullmatch(pattern, value):
        return f"{name} must match {pattern}"
    if len(value) < int(spec.get("MinLength", 0)) or len(value) > int(spec.get("MaxLength", len(value))):
        return f"{name} must be {spec.get('MinLength', 0)} to {spec.get('MaxLength', 'any')} characters long"
    return None


def log_level(template: Template, level: str | None) -> str | None:
    """``--log-level``, checked against the template's LogLevel parameter (any case)."""
    if level is None:
        return None
    problem = parameter_problem(template, "LogLevel", level.upper())
    if problem:
        raise SystemExit(f"segctl: --log-level {level!r}: {problem}")
    return level.upper()
