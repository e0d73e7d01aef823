"""segctl: run the SAM application on this machine, without Docker or an AWS account.

  segctl local start-api [--port 3000]          serve every HttpApi route of template.yaml [--seed-demo]
  segctl local invoke <LogicalId> --event FILE   invoke one function with an event
  segctl segments validate [FILE]                check a segment catalog
  segctl segments explain --email X              why a customer is (not) in each segment
  segctl segments preview FILE                   who would enter/leave the file's changed segments
  segctl destinations validate FILE              check a destinations file (ESP lists, tags, properties)
  segctl sync reconcile --destination ID         push a destination's full desired state [--dry-run]
  segctl dlq list|replay --queue NAME [--max N]  what waits in a dead-letter queue and why; send it back
  segctl sweep [--at +30d]                       apply time-based changes as of a time (local endpoint)
  segctl backfill [--segments 4]                 re-evaluate every profile after a catalog change
  segctl import csv --orders F --customers F     import a shop's history (resumable; --quiet: no events)
  segctl import shopify --shop S [--file F]      import a Shopify store's customers and orders (Admin API)
  segctl import woocommerce --site URL [FILES]   import a WooCommerce store (REST API, or saved pages)
  segctl import klaviyo|mailchimp FILES --account ID   import an ESP's member export (consent, engagement)
  segctl dashboard --url API_URL [--port 8100]   the dashboard of a deployed stack (SigV4-signed API calls)
  segctl demo                                    replay sample webhooks and print a segment report

Exit codes: 0 done; 1 the work failed, or what was checked is not valid (segments validate); 2 a usage
error (a bad option, file or event: the message says what to do); 130 interrupted. SEGCTL_DEBUG=1
shows the traceback of an unexpected failure. Long commands draw a progress bar on a terminal and
write plain lines when their output goes to a log. Full reference: docs/cli.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from .checks import bounded_int, check_event_kind, log_level, parameter_problem
from .template import Template, TemplateError


def _template(args) -> Template:
    path = Path(args.template)
    if not path.exists():
        raise SystemExit(f"segctl: {path} not found; run from the project root or pass --template")
    return Template(path)


def cmd_start_api(args) -> int:
    from .runtime import LocalStack
    from .server import LocalApi

    template = _template(args)
    for item in args.parameter_overrides or []:
        name, sep, value = item.partition("=")
        if not sep or name not in template.parameters:
            raise SystemExit(f"segctl: --parameter-overrides {item!r}: give Name=Value with a parameter of "
                             f"template.yaml ({', '.join(sorted(template.parameters))})")
        problem = parameter_problem(template, name, value)
        if problem:
            raise SystemExit(f"segctl: --parameter-overrides {item!r}: {problem}")
        template.parameters[name] = value
    secrets = signing = None
    if args.seed_demo:
        from .demo import DEMO_DESTINATIONS, demo_secrets

        os.environ.setdefault("DESTINATIONS_FILE", DEMO_DESTINATIONS)
        overridden = {item.partition("=")[0] for item in args.parameter_overrides or []}
        for name, seconds in (("EspSyncBatchingWindow", "1"), ("MetricsBatchingWindow", "1")):
            if name not in overridden:  # the seeding waits for the queues: as the demo, short windows
                template.parameters[name] = seconds
        secrets, signing = demo_secrets()
    stack = LocalStack(template, log_level=log_level(template, args.log_level), esp_fakes=True,
                       secret_values=secrets).start()
    try:
        api = LocalApi(stack, host="127.0.0.1", port=args.port)
    except OSError as exc:
        stack.stop()
        raise SystemExit(f"segctl: cannot listen on 127.0.0.1:{args.port} ({exc.strerror}); try --port") from None
    api.start()
    stack.start_pollers()
    stack.start_schedules()
    if args.seed_demo:
        from .demo import seed

        print(f"Seeding the demo's data through {api.url} ...", flush=True)
        if seed(stack, api.url, signing) != 0:
            api.stop()
            stack.stop()
            return 1
        print(f"Demo data loaded (as of now): try {api.url}/segments or {api.url}/docs")
    print(f"AWS endpoint: {stack.endpoint}" + ("" if args.endpoint_given else " (embedded moto)"))
    for route in stack.template.routes():
        auth = "  [AWS_IAM in AWS; not enforced locally]" if route.auth else ""
        print(f"  {route.method:<6} {api.url}{route.path} -> {route.function}{auth}")
    print(f"Swagger UI: {api.url}/docs   (local only)")
    print(f"Dashboard: {api.url}/dashboard")
    destinations = os.environ.get("DESTINATIONS_FILE")
    if destinations:
        print(f"ESP sync: {destinations}")
        for kind, variable in (("klaviyo", "KLAVIYO_API_URL"), ("mailchimp", "MAILCHIMP_API_URL")):
            if kind in stack.esp_fakes:
                print(f"  {kind}: built-in fake at {os.environ[variable]}  (export {variable}={os.environ[variable]} "
                      "for `segctl sync reconcile`)")
            elif os.environ.get(variable):
                print(f"  {kind}: {os.environ[variable]}")
    else:
        print("ESP sync: off (set DESTINATIONS_FILE to a destinations file; docs/destinations.md)")
    print(f"Ready: {api.url}/health   (Ctrl-C to stop)", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    api.stop()
    stack.stop()
    return 0


def cmd_invoke(args) -> int:
    from .runtime import LocalStack

    try:
        event = json.loads(Path(args.event).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SystemExit(f"segctl: event file {args.event} not found; give a JSON Lambda event "
                         "(samples under events/)") from None
    except OSError as exc:
        raise SystemExit(f"segctl: cannot read the event file {args.event}: {exc.strerror}") from None
    except ValueError as exc:  # bad JSON, or not UTF-8
        raise SystemExit(f"segctl: event file {args.event} is not JSON: {exc}") from None
    template = _template(args)
    check_event_kind(template, args.function, event, args.event)
    stack = LocalStack(template, log_level=log_level(template, args.log_level)).start()
    try:
        result = stack.invoke(args.function, event)
    except Exception as exc:  # noqa: BLE001 - the function's own failure, as Lambda reports it
        print(f"segctl: {args.function} failed on {args.event}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_demo(args) -> int:
    from .demo import run

    if args.serve:  # the demo's data, as of now, kept up for a person to explore (Swagger UI, dashboard)
        args.seed_demo, args.log_level, args.parameter_overrides = True, None, []
        return cmd_start_api(args)

    for stream in args.stream:
        try:
            doc = json.loads(Path(stream).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SystemExit(f"segctl: --stream {stream}: no such file (the demo's streams are under "
                             "events/demo/)") from None
        except OSError as exc:
            raise SystemExit(f"segctl: --stream {stream}: cannot read it: {exc.strerror}") from None
        except ValueError as exc:
            raise SystemExit(f"segctl: --stream {stream} is not JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("deliveries"), list):
            raise SystemExit(f"segctl: --stream {stream} is not a demo stream: it needs a \"deliveries\" list "
                             "(see events/demo/shopify-stream.json)")
    _template(args)
    return run(args.template, args.stream)


def cmd_dashboard(args) -> int:
    from .dashboard import run

    return run(args.url, args.port, args.region)


def cmd_segments_validate(args) -> int:
    from .segments import validate

    return validate(args.file)


def cmd_segments_explain(args) -> int:
    from .segments import explain

    return explain(args.url, args.email)


def cmd_segments_preview(args) -> int:
    from .segments import preview

    return preview(args.url, args.file, args.segment, args.sample)


def cmd_destinations_validate(args) -> int:
    from .destinations import validate

    return validate(args.file, args.catalog)


def cmd_sync_reconcile(args) -> int:
    from .sync import reconcile

    return reconcile(_template(args), args.destination, args.dry_run, args.stack)


def cmd_dlq(args) -> int:
    from .dlq import run

    return run(_template(args), args.dlq_command, args.queue, args.stack, args.max)


def cmd_sweep(args) -> int:
    from .timecmds import sweep

    return sweep(_template(args), args.at)


def cmd_backfill(args) -> int:
    from .timecmds import backfill

    return backfill(_template(args), args.segments)


def cmd_import_shopify(args) -> int:
    from .import_shopify import import_shopify

    return import_shopify(_template(args), args.shop, args.file, args.quiet)


def cmd_import_woocommerce(args) -> int:
    from .import_woocommerce import import_woocommerce

    key = args.key or os.environ.get("WOOCOMMERCE_CONSUMER_KEY")
    secret = args.secret or os.environ.get("WOOCOMMERCE_CONSUMER_SECRET")
    return import_woocommerce(_template(args), args.site, key, secret, args.files, args.quiet)


def cmd_import_esp(args) -> int:
    from .import_esp import import_esp

    return import_esp(_template(args), args.import_command, args.files, args.account,
                      getattr(args, "status", None), args.quiet)


def cmd_import_csv(args) -> int:
    from .imports import import_csv

    return import_csv(_template(args), args.orders, args.customers, args.platform, args.shop, args.quiet)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="segctl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--template", default="template.yaml", help="SAM template (default: ./template.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)

    local = sub.add_parser("local", help="run the application locally").add_subparsers(dest="local_command", required=True)
    start = local.add_parser("start-api", help="serve the HTTP API on 127.0.0.1 (Swagger UI at /docs)")
    start.add_argument("--port", type=bounded_int(1, 65535, "a TCP port"), default=3000,
                       help="the port to listen on, 1-65535 (default 3000)")
    start.add_argument("--log-level", default=None, help="override the LogLevel parameter (e.g. DEBUG)")
    start.add_argument("--parameter-overrides", nargs="*", metavar="NAME=VALUE",
                       help="template parameters, as sam's (e.g. EspSyncBatchingWindow=2)")
    start.add_argument("--seed-demo", action="store_true",
                       help="load the demo's shop history and webhooks first (`segctl demo` without its time travel)")
    start.set_defaults(func=cmd_start_api)
    invoke = local.add_parser("invoke", help="invoke one function with an event file")
    invoke.add_argument("function", help="logical id in template.yaml, e.g. WebhookFunction")
    invoke.add_argument("--event", "-e", required=True,
                        help="a Lambda event (JSON) of the kind the function's event source sends (samples: events/)")
    invoke.add_argument("--log-level", default="WARNING", help="the LogLevel parameter for this run (default WARNING)")
    invoke.set_defaults(func=cmd_invoke)

    segments = sub.add_parser("segments", help="the segment catalog").add_subparsers(dest="segments_command", required=True)
    val = segments.add_parser("validate", help="validate a catalog YAML (default: the shipped catalog)")
    val.add_argument("file", nargs="?", default=None)
    val.set_defaults(func=cmd_segments_validate)
    exp = segments.add_parser("explain", help="per segment: member or not, and the value of every condition")
    exp.add_argument("--email", required=True, help="the customer's email address")
    exp.add_argument("--url", default="http://127.0.0.1:3000", help="the API (default: the local runner)")
    exp.set_defaults(func=cmd_segments_explain)
    pre = segments.add_parser("preview", help="dry-run a catalog file's new or changed segments against stored profiles")
    pre.add_argument("file", help="the edited catalog YAML")
    pre.add_argument("--segment", action="append", help="preview this segment (repeatable; default: every changed one)")
    pre.add_argument("--sample", type=bounded_int(0, 100, "a count"), default=5,
                     help="profile ids shown per list, 0-100 (default 5)")
    pre.add_argument("--url", default="http://127.0.0.1:3000", help="the API (default: the local runner)")
    pre.set_defaults(func=cmd_segments_preview)

    destinations = sub.add_parser("destinations", help="the destinations file (where segments and traits go)")
    dests = destinations.add_subparsers(dest="destinations_command", required=True)
    dval = dests.add_parser("validate", help="validate a destinations YAML against a catalog")
    dval.add_argument("file", help="the destinations YAML")
    dval.add_argument("--catalog", default=None, help="the catalog it refers to (default: the shipped catalog)")
    dval.set_defaults(func=cmd_destinations_validate)

    sync = sub.add_parser("sync", help="the ESP sync").add_subparsers(dest="sync_command", required=True)
    rec = sync.add_parser("reconcile", help="push a destination's full desired state, from what the ESP holds")
    rec.add_argument("--destination", required=True, help="the destination's id in the destinations file")
    rec.add_argument("--dry-run", action="store_true", help="report the differences, send nothing")
    rec.add_argument("--stack", default=None, help="run the deployed EspReconcileFunction of this stack (AWS)")
    rec.set_defaults(func=cmd_sync_reconcile)

    dlq = sub.add_parser("dlq", help="dead-letter queues").add_subparsers(dest="dlq_command", required=True)
    for action, text in (("list", "what waits in a dead-letter queue and why it failed (kinds and ids, no payloads)"),
                         ("replay", "after a fix: send the messages of a dead-letter queue back to its source queue "
                                    "(in AWS: an SQS message move task)")):
        cmd = dlq.add_parser(action, help=text, description=text)
        cmd.add_argument("--queue", required=True, help="esp-sync, profile, backfill, or a logical id")
        cmd.add_argument("--stack", default=None, help="a deployed stack (default: AWS_ENDPOINT_URL, the local runner)")
        cmd.add_argument("--max", type=bounded_int(1, None, "a count"), default=None, metavar="N",
                         help="at most N messages (default: all); replay then moves them one by one, in AWS too")
        cmd.set_defaults(func=cmd_dlq)

    sw = sub.add_parser("sweep", help="run the sweep once, at a given time (moves time forward)")
    sw.add_argument("--at", default="now", help="now, +30d, +2h, +90m or an ISO time")
    sw.set_defaults(func=cmd_sweep)
    bf = sub.add_parser("backfill", help="re-evaluate every profile with the current catalog")
    bf.add_argument("--segments", type=bounded_int(1, 64, "a count"), default=4,
                    help="parallel scan segments, one thread each, 1-64 (default 4)")
    bf.set_defaults(func=cmd_backfill)
    imp = sub.add_parser("import", help="import a shop's history").add_subparsers(dest="import_command", required=True)
    icsv = imp.add_parser("csv", help="CSV files of orders and customers (columns: docs/import.md)")
    icsv.add_argument("--orders", action="append", default=[], metavar="FILE", help="an orders CSV (repeatable)")
    icsv.add_argument("--customers", action="append", default=[], metavar="FILE", help="a customers CSV (repeatable)")
    icsv.add_argument("--platform", default="csv", choices=["csv", "shopify", "woocommerce", "magento"],
                      help="where the records come from, so that live webhooks of the same orders count once")
    icsv.add_argument("--shop", default=None, help="the shop (x.myshopify.com, shop.example.com) for --platform")
    icsv.add_argument("--quiet", action="store_true",
                      help="publish no membership events (then run `segctl sync reconcile` for each ESP)")
    icsv.set_defaults(func=cmd_import_csv)
    ishop = imp.add_parser("shopify", help="a Shopify store, through its Admin API's bulk queries (docs/import.md)")
    ishop.add_argument("--shop", required=True, help="the store: NAME.myshopify.com")
    ishop.add_argument("--file", default=None, help="a bulk-query JSONL saved before, instead of the API")
    ishop.add_argument("--quiet", action="store_true",
                       help="publish no membership events (then run `segctl sync reconcile` for each ESP)")
    ishop.set_defaults(func=cmd_import_shopify)
    iwoo = imp.add_parser("woocommerce", help="a WooCommerce store, through its REST API or saved pages (docs/import.md)")
    iwoo.add_argument("--site", required=True, help="the store's https:// address")
    iwoo.add_argument("--key", default=None, help="a Read REST API consumer key (or WOOCOMMERCE_CONSUMER_KEY)")
    iwoo.add_argument("--secret", default=None, help="its secret (or WOOCOMMERCE_CONSUMER_SECRET)")
    iwoo.add_argument("files", nargs="*", help="saved REST pages or JSON Lines of orders/customers, instead of the API")
    iwoo.add_argument("--quiet", action="store_true", help="publish no membership events")
    iwoo.set_defaults(func=cmd_import_woocommerce)
    for esp, text in (("klaviyo", "a Klaviyo profiles CSV export"), ("mailchimp", "Mailchimp audience CSV exports")):
        cmd = imp.add_parser(esp, help=f"{text}: consent, names, engagement (docs/import.md)")
        cmd.add_argument("files", nargs="+", help="the exported CSV file(s)")
        cmd.add_argument("--account", required=True,
                         help="the Klaviyo account id (public API key)" if esp == "klaviyo" else "the Mailchimp audience id")
        if esp == "mailchimp":
            cmd.add_argument("--status", default=None, choices=["subscribed", "unsubscribed", "cleaned"],
                             help="the members' status, for a file whose columns do not say it")
        cmd.add_argument("--quiet", action="store_true", help="publish no membership events")
        cmd.set_defaults(func=cmd_import_esp)

    dash = sub.add_parser("dashboard", help="serve the dashboard of a deployed stack on 127.0.0.1 (docs/measure.md)")
    dash.add_argument("--url", required=True, help="the management API's URL (the stack's ApiUrl output)")
    dash.add_argument("--port", type=int, default=8100)
    dash.add_argument("--region", default=None, help="default: from the URL, else the AWS configuration")
    dash.set_defaults(func=cmd_dashboard)

    demo = sub.add_parser("demo", help="replay sample Shopify webhooks through the local stack")
    demo.add_argument("--stream", nargs="+", default=["events/demo/shopify-stream.json", "events/demo/mixed-stream.json"],
                      help="demo streams to replay (default: Shopify, then several sources at once)")
    demo.add_argument("--serve", action="store_true",
                      help="load the demo's data as of now and keep the runner up (the dashboard, Swagger UI); "
                           "same as `segctl local start-api --seed-demo`")
    demo.add_argument("--port", type=bounded_int(1, 65535, "a TCP port"), default=3000,
                      help="with --serve: the port to listen on")
    demo.set_defaults(func=cmd_demo)

    args = parser.parse_args(argv)
    args.endpoint_given = bool(os.environ.get("AWS_ENDPOINT_URL"))
    try:
        return args.func(args)
    except TemplateError as exc:
        print(f"segctl: template.yaml: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:
        if isinstance(exc.code, str):  # SystemExit("segctl: ..."): a usage error, said once, exit code 2
            print(exc.code, file=sys.stderr)
            exc.code = 2
        raise
    except KeyboardInterrupt:
        print("segctl: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a message, not a traceback (SEGCTL_DEBUG=1 shows it)
        if os.environ.get("SEGCTL_DEBUG"):
            raise
        print(f"segctl: {args.command} failed: {type(exc).__name__}: {exc} (SEGCTL_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
