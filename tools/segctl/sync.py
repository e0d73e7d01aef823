"""`segctl sync reconcile --destination ID [--dry-run]`: push the full desired state of a
destination's synced segments, from what the ESP really holds (docs/destinations.md, "Reconcile").

Against the endpoint `segctl local start-api` prints (``AWS_ENDPOINT_URL``), the reconcile runs in
this process with the local runner's settings (the destinations file in ``DESTINATIONS_FILE``, the
ESP URLs in ``KLAVIYO_API_URL`` / ``MAILCHIMP_API_URL``). In AWS (``--stack NAME``) it invokes the
deployed EspReconcileFunction, which runs with the deployment's file and keys, and prints its report.
"""

from __future__ import annotations

import json
import os
import sys

from .template import Template


def _print_report(report: dict) -> None:
    if "error" in report:
        print(f"{report['destination']}: failed: {report['error']}", file=sys.stderr)
        return
    verb = "would change" if report["dry_run"] else "changed"
    print(f"{report['destination']}: {report['profiles']:,} profiles checked, {report['held']:,} memberships held "
          f"at the ESP; {verb} {report['pushes']:,} addresses ({report['strays']:,} strays), "
          f"properties {'to write' if report['dry_run'] else 'written'} for {report['properties_set']:,}"
          + ("" if report["dry_run"] else f"; {report['calls']:,} API calls, {report['refused']:,} refused"))
    for target, d in report["targets"].items():
        print(f"  {target}: +{d['added']:,} -{d['removed']:,}")


def reconcile(template: Template, destination: str, dry_run: bool, stack_name: str | None) -> int:
    if stack_name:
        return _reconcile_in_aws(stack_name, destination, dry_run)
    if not os.environ.get("AWS_ENDPOINT_URL"):
        raise SystemExit("segctl: set AWS_ENDPOINT_URL to the endpoint `segctl local start-api` prints, or pass "
                         "--stack NAME to run the deployed EspReconcileFunction in AWS")
    if not os.environ.get("DESTINATIONS_FILE"):
        raise SystemExit("segctl: set DESTINATIONS_FILE to the destinations file the local runner uses")
    from segmentation import bootstrap
    from segmentation.errors import NotFoundError, SegmentationError

    from .runtime import LocalStack

    stack = LocalStack(template, log_level="WARNING").start()
    try:
        job = bootstrap.esp_reconcile(progress=lambda line: print(f"  {line}", flush=True))
        try:
            report = job.run(destination, dry_run=dry_run)
        except NotFoundError as exc:
            print(f"segctl: {exc}", file=sys.stderr)
            return 2
        except SegmentationError as exc:
            print(f"segctl: reconcile of {destination} failed: {exc}; run it again to resume (what was applied "
                  "is not sent twice)", file=sys.stderr)
            return 1
        _print_report(report.as_dict())
        return 0
    finally:
        stack.stop()


def _reconcile_in_aws(stack_name: str, destination: str, dry_run: bool) -> int:
    import boto3
    from botocore.config import Config

    cfn = boto3.client("cloudformation")
    try:
        resource = cfn.describe_stack_resource(StackName=stack_name, LogicalResourceId="EspReconcileFunction")
    except Exception as exc:  # noqa: BLE001 - any failure here means the same to the user
        raise SystemExit(f"segctl: cannot find EspReconcileFunction in stack {stack_name}: {exc}") from None
    name = resource["StackResourceDetail"]["PhysicalResourceId"]
    print(f"invoking {name} (up to 15 minutes; progress in its CloudWatch logs)", flush=True)
    client = boto3.client("lambda", config=Config(read_timeout=910, retries={"max_attempts": 0}))
    out = client.invoke(FunctionName=name, Payload=json.dumps({"destination": destination, "dry_run": dry_run}))
    payload = json.loads(out["Payload"].read() or b"{}")
    if out.get("FunctionError"):
        print(f"segctl: the reconcile failed: {payload.get('errorMessage', payload)}", file=sys.stderr)
        return 1
    reports = payload.get("reports", [])
    for report in reports:
        _print_report(report)
    return 1 if any("error" in r for r in reports) else 0
