"""Run the template's functions in this process, as Lambda would.

* :class:`LocalStack` starts (or connects to) the AWS endpoint, provisions the
  template's resources there and sets the functions' environment.
* :meth:`LocalStack.invoke` imports ``Handler`` from ``CodeUri`` and calls it with a
  Lambda context; one invocation per function at a time, like one execution
  environment (Powertools' resolvers keep the current event in module state).
* :class:`SqsPoller` is the event source mapping: it long-polls the queue, hands
  batches to the function and deletes what the function did not report as failed.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import yaml

from .provision import dev_destination_keys, dev_secret_values, provision
from .template import ACCOUNT, FunctionSpec, Template


@dataclass
class LambdaContext:
    function_name: str
    timeout_s: int
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"

    def __post_init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{self.function_name}"
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + self.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load_handler(spec: FunctionSpec, environment: int = 0) -> Callable:
    """Import ``Handler`` from ``CodeUri``, as the Lambda runtime does. ``environment`` > 0 loads a
    separate copy of the handler's module (its own module-level state, such as Powertools' resolver
    and its current event), as a second Lambda execution environment would have; the layer's
    modules are shared, as boto3 clients may be.

    The module is imported with the function's own ``POWERTOOLS_SERVICE_NAME`` (template.yaml): its
    Powertools Logger is built then, and a logger per service keeps each function's keys (function
    name, cold start, request id) to itself when functions share this process."""
    if spec.code_uri not in sys.path:
        sys.path.insert(0, spec.code_uri)
    name = spec.module if not environment else f"{spec.module}__environment_{environment}"
    if name not in sys.modules:
        service = spec.environment.get("POWERTOOLS_SERVICE_NAME")
        saved = os.environ.get("POWERTOOLS_SERVICE_NAME")
        if isinstance(service, str):
            os.environ["POWERTOOLS_SERVICE_NAME"] = service
        try:
            if not environment:
                importlib.import_module(spec.module)
            else:
                source = Path(spec.code_uri) / f"{spec.module}.py"
                module_spec = importlib.util.spec_from_file_location(name, source)
                module = importlib.util.module_from_spec(module_spec)
                sys.modules[name] = module
                module_spec.loader.exec_module(module)
        finally:
            if saved is None:
                os.environ.pop("POWERTOOLS_SERVICE_NAME", None)
            else:
                os.environ["POWERTOOLS_SERVICE_NAME"] = saved
    return getattr(sys.modules[name], spec.attr)


def lambda_environment(context: LambdaContext, region: str) -> dict[str, str]:
    """The variables the Lambda runtime sets in a function's environment (the reserved ones that
    describe the function), for one invocation."""
    return {"AWS_LAMBDA_FUNCTION_NAME": context.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": context.function_version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(context.memory_limit_in_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": context.log_group_name,
            "AWS_LAMBDA_LOG_STREAM_NAME": context.log_stream_name, "AWS_REGION": region}


def context_for(template: Template, function: str) -> LambdaContext:
    spec = template.functions()[function]
    return LambdaContext(function_name=f"{template.stack_name}-{function}", timeout_s=spec.timeout)


class LocalStack:
    """The template's resources on one endpoint, and its functions in this process."""

    def __init__(self, template: Template, endpoint: str | None = None, log_level: str | None = None,
                 secret_values: dict[str, str] | None = None, esp_fakes: bool = False) -> None:
        self.template = template
        self._moto = None
        self.endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL")
        self.log_level = log_level
        self.secret_values = secret_values
        #: per function, its execution environments: (handler, lock), one invocation at a time each
        self._environments: dict[str, list[tuple[Any, threading.Lock]]] = {}
        self._pool_lock = threading.Lock()
        self.pollers: list[SqsPoller] = []
        #: start built-in fake ESPs for the destinations whose URL is not set (start-api, demo)
        self.want_esp_fakes = esp_fakes
        #: the built-in fakes started: "klaviyo" / "mailchimp" -> the fake server
        self.esp_fakes: dict[str, Any] = {}

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> LocalStack:
        check_files(os.environ.get("CATALOG_FILE"), os.environ.get("DESTINATIONS_FILE"))
        if not self.endpoint:
            import logging

            from moto.server import ThreadedMotoServer

            logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log

            self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            self._moto.start()
            host, port = self._moto.get_host_and_port()
            self.endpoint = f"http://{host}:{port}"
        if urlsplit(self.endpoint).hostname in ("127.0.0.1", "localhost", "::1"):
            # A local endpoint (moto) accepts any credentials; do not ask the user for some.
            os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
            os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
        os.environ["AWS_ENDPOINT_URL"] = self.endpoint
        os.environ.setdefault("AWS_DEFAULT_REGION", self.template.region)
        os.environ.setdefault("AWS_REGION", self.template.region)
        self.session = boto3.session.Session(region_name=self.template.region)
        # Files and ESP URLs given in the environment win over the template's defaults (empty).
        for variable, parameter in (("CATALOG_FILE", "CatalogFile"), ("DESTINATIONS_FILE", "DestinationsFile")):
            if os.environ.get(variable):
                self.template.parameters[parameter] = os.environ[variable]
        from botocore.exceptions import EndpointConnectionError

        try:
            provision(self.template, self.session, self.secret_values or dev_secret_values())
        except EndpointConnectionError:
            self.stop()
            raise SystemExit(f"segctl: nothing answers at AWS_ENDPOINT_URL={self.endpoint}: start `segctl local "
                             "start-api` (it prints the endpoint to use), or unset AWS_ENDPOINT_URL") from None
        if self.log_level:
            self.template.parameters["LogLevel"] = self.log_level
        given = {k: os.environ[k] for k in ("KLAVIYO_API_URL", "MAILCHIMP_API_URL") if os.environ.get(k)}
        # Every function sees its own variables; they share one process, so the union is set.
        for name in self.template.functions():
            os.environ.update(self.template.environment(name))
        os.environ.update(given)
        if self.want_esp_fakes:
            self._start_esp_fakes()
        # Components built for another endpoint earlier in this process (another stack, a test) must
        # not serve this one: the handlers build their clients again, from this environment.
        from segmentation import bootstrap

        bootstrap.reset()
        # CloudWatch metrics (EMF lines on stdout) mean nothing locally; POWERTOOLS_METRICS_DISABLED=false shows them
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
        return self

    def start_pollers(self) -> None:
        for function, queue, props in self.template.sqs_sources():
            poller = SqsPoller(self, function, self.template.queue_url(queue, self.endpoint),
                               int(props.get("BatchSize", 10)), self.template.arn(queue),
                               window_s=float(self.template.resolve(props.get("MaximumBatchingWindowInSeconds", 0))))
            poller.start()
            self.pollers.append(poller)

    def start_schedules(self) -> None:
        for function, name, expression in self.template.schedules():
            seconds = rate_seconds(expression)
            if seconds is None:
                print(f"segctl: {function}.{name}: only rate(...) schedules run locally; {expression} does not")
                continue
            ticker = Scheduler(self, function, seconds, self.template.arn(function))
            ticker.start()
            self.pollers.append(ticker)

    def _start_esp_fakes(self) -> None:
        """A built-in fake Klaviyo / Mailchimp (tools/segctl/espfakes) for each ESP type the
        destinations file names whose URL is not set, holding the file's lists and audiences and
        taking the local DestinationSecret's keys; the sync functions are pointed at them."""
        path = os.environ.get("DESTINATIONS_FILE")
        if not path:
            return
        try:
            doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
            destinations = [d for d in doc.get("destinations") or [] if isinstance(d, dict)]
        except (OSError, yaml.YAMLError, AttributeError):
            return  # the functions report the file's problems when they load it
        keys = dev_destination_keys()
        klaviyo_lists = {str(t.get("list")) for d in destinations if d.get("type") == "klaviyo"
                         for t in (d.get("segments") or {}).values() if isinstance(t, dict) and t.get("list")}
        audiences = {str(d["list"]) for d in destinations if d.get("type") == "mailchimp" and d.get("list")}
        if any(d.get("type") == "klaviyo" for d in destinations) and not os.environ.get("KLAVIYO_API_URL"):
            from .espfakes.klaviyo import FakeKlaviyo

            fake = FakeKlaviyo(api_key=keys["klaviyo"]).start()
            for list_id in sorted(klaviyo_lists):
                fake.create_list(f"list {list_id}", list_id)
            self.esp_fakes["klaviyo"] = fake
            os.environ["KLAVIYO_API_URL"] = fake.base_url
        if audiences and not os.environ.get("MAILCHIMP_API_URL"):
            from .espfakes.mailchimp import FakeMailchimp

            fake = FakeMailchimp(api_key=keys["mailchimp"], lists={a: [] for a in sorted(audiences)}).start()
            self.esp_fakes["mailchimp"] = fake
            os.environ["MAILCHIMP_API_URL"] = fake.root_url

    def stop(self) -> None:
        for fake in self.esp_fakes.values():
            fake.stop()
        for p in self.pollers:
            p.stop()
        for p in self.pollers:  # a poller mid-receive must not take a message it will never deliver
            if p.is_alive() and p is not threading.current_thread():
                p.join(timeout=5)
        if self._moto is not None:
            self._moto.stop()
            self._moto = None

    def client(self, service: str):
        return self.session.client(service)

    # -- invoking -----------------------------------------------------------------------------
    #: how many invocations of one function run at once (Lambda scales out; this machine has 2 cores)
    MAX_ENVIRONMENTS = 4

    def handler(self, function: str):
        return self._environment(function, 0)[0]

    def _environment(self, function: str, index: int) -> tuple[Any, threading.Lock]:
        with self._pool_lock:
            pool = self._environments.setdefault(function, [])
            while len(pool) <= index:
                spec = self.template.functions().get(function)
                if spec is None:
                    known = ", ".join(self.template.functions())
                    raise KeyError(f"no function {function!r} in {self.template.path}; functions: {known}")
                pool.append((load_handler(spec, len(pool)), threading.Lock()))
            return pool[index]

    def invoke(self, function: str, event: dict) -> Any:
        """Run one invocation in a free execution environment of the function (a new one, up to
        MAX_ENVIRONMENTS, when all are busy; else wait for the first to be free)."""
        handler, lock = self._environment(function, 0)
        if not lock.acquire(blocking=False):
            for index in range(1, self.MAX_ENVIRONMENTS):
                handler, lock = self._environment(function, index)
                if lock.acquire(blocking=False):
                    break
            else:
                handler, lock = self._environment(function, 0)
                lock.acquire()
        try:
            context = context_for(self.template, function)
            # One process holds every function: invocations running at once share these variables
            # (the last set wins); each function's log lines come from its own logger (load_handler).
            os.environ.update(lambda_environment(context, self.template.region))
            return handler(event, context)
        finally:
            lock.release()
            _forget_metrics()

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait until every polled queue is empty and no batch is in flight."""
        deadline = time.monotonic() + timeout_s
        sqs = self.client("sqs")
        while time.monotonic() < deadline:
            busy = False
            for p in self.pollers:
                if not isinstance(p, SqsPoller):
                    continue
                attrs = sqs.get_queue_attributes(
                    QueueUrl=p.queue_url,
                    AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
                )["Attributes"]
                if p.in_flight or int(attrs["ApproximateNumberOfMessages"]) or int(attrs["ApproximateNumberOfMessagesNotVisible"]):
                    busy = True
            if not busy:
                return True
            time.sleep(0.1)
        return False


def check_files(catalog: str | None, destinations: str | None) -> None:
    """A usage error (SystemExit) naming the file and its problems when the catalog or destinations
    file the functions would load is missing or not valid: said once, before anything runs, rather
    than by every invocation."""
    from segmentation.domain.catalog import CatalogError, load_catalog

    try:
        loaded = load_catalog(catalog)
    except CatalogError as exc:
        raise SystemExit(f"segctl: CATALOG_FILE={catalog}: the catalog is not valid:\n{exc}\n"
                         f"fix it (`segctl segments validate {catalog}`) or unset CATALOG_FILE") from None
    if not destinations:
        return
    from segmentation.destinations.config import DestinationsError, load_destinations

    try:
        text = Path(destinations).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise SystemExit(f"segctl: DESTINATIONS_FILE={destinations}: cannot read it ({reason}); "
                         "fix the path or unset DESTINATIONS_FILE") from None
    try:
        load_destinations(text, loaded, destinations)
    except DestinationsError as exc:
        raise SystemExit(f"segctl: DESTINATIONS_FILE={destinations} is not valid:\n" + "\n".join(exc.errors)
                         + f"\nfix it (`segctl destinations validate {destinations}`) or unset DESTINATIONS_FILE") from None


def rate_seconds(expression: str) -> int | None:
    """Seconds between runs of ``rate(N unit)``; None for anything else (cron)."""
    m = re.fullmatch(r"rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)", expression.strip())
    if not m:
        return None
    return int(m.group(1)) * {"minute": 60, "hour": 3600, "day": 86400}[m.group(2).rstrip("s")]


def _forget_metrics() -> None:
    """With metrics off (the default here), what a handler adds is never flushed, so Powertools'
    process-wide metric set would keep growing, and Powertools prints a metric's values on stdout
    once it holds 100, off or not: EMF documents among the runner's output. Lambda flushes them
    per invocation; here they go."""
    if os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() in ("true", "1"):
        from aws_lambda_powertools import Metrics

        Metrics().clear_metrics()


def scheduled_event(at: datetime, rule_arn: str) -> dict:
    """What EventBridge Scheduler sends a target: the run's ``time`` is what the sweep evaluates at."""
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
        "account": ACCOUNT, "time": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "region": "us-east-1",
        "resources": [rule_arn], "detail": {},
    }


class Scheduler(threading.Thread):
    """A ``rate(...)`` schedule: invokes the function at each tick with the tick's time."""

    def __init__(self, stack: LocalStack, function: str, seconds: int, arn: str) -> None:
        super().__init__(daemon=True, name=f"schedule-{function}")
        self.stack, self.function, self.seconds, self.arn = stack, function, seconds, arn
        self._stopping = threading.Event()
        self.errors: list[str] = []
        self.in_flight = False

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        while not self._stopping.wait(self.seconds - time.time() % self.seconds):
            try:
                self.stack.invoke(self.function, scheduled_event(datetime.now(UTC).replace(second=0, microsecond=0), self.arn))
            except Exception as exc:
                self.errors.append(repr(exc))


class SqsPoller(threading.Thread):
    """An SQS event source mapping with ReportBatchItemFailures."""

    def __init__(self, stack: LocalStack, function: str, queue_url: str, batch_size: int, queue_arn: str,
                 window_s: float = 0.0):
        super().__init__(daemon=True, name=f"sqs-{function}")
        self.stack = stack
        self.function = function
        self.queue_url = queue_url
        self.batch_size = batch_size
        #: MaximumBatchingWindowInSeconds: after the first message, gather more for this long (or
        #: until the batch is full), as Lambda's event source mapping does
        self.window_s = window_s
        self.queue_arn = queue_arn
        self.in_flight = False
        self._stopping = threading.Event()
        self.errors: list[str] = []

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        sqs = self.stack.client("sqs")
        while not self._stopping.is_set():
            try:
                out = sqs.receive_message(
                    QueueUrl=self.queue_url, MaxNumberOfMessages=min(self.batch_size, 10),
                    WaitTimeSeconds=1, AttributeNames=["All"], MessageAttributeNames=["All"],
                )
            except Exception as exc:  # endpoint going away at shutdown
                if self._stopping.is_set():
                    return
                self.errors.append(repr(exc))
                time.sleep(0.5)
                continue
            messages = out.get("Messages", [])
            if not messages:
                continue
            self.in_flight = True
            deadline = time.monotonic() + self.window_s
            while len(messages) < self.batch_size and time.monotonic() < deadline and not self._stopping.is_set():
                more = sqs.receive_message(
                    QueueUrl=self.queue_url, MaxNumberOfMessages=min(self.batch_size - len(messages), 10),
                    WaitTimeSeconds=0, AttributeNames=["All"], MessageAttributeNames=["All"],
                ).get("Messages", [])
                if more:
                    messages += more
                else:
                    time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
            try:
                self._deliver(sqs, messages)
            finally:
                self.in_flight = False

    def _deliver(self, sqs: Any, messages: list[dict]) -> None:
        event = {"Records": [
            {
                "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                "attributes": m.get("Attributes", {}), "messageAttributes": m.get("MessageAttributes", {}),
                "md5OfBody": m.get("MD5OfBody"), "eventSource": "aws:sqs",
                "eventSourceARN": self.queue_arn, "awsRegion": self.stack.template.region,
            }
            for m in messages
        ]}
        try:
            result = self.stack.invoke(self.function, event) or {}
        except Exception as exc:  # the whole batch returns to the queue, as in Lambda
            self.errors.append(repr(exc))
            return
        failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        if failed:
            self.errors.append(f"{len(failed)} record(s) failed in {self.function}")
        for start in range(0, len(done), 10):  # DeleteMessageBatch takes at most 10 entries
            sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done[start:start + 10])],
            )
