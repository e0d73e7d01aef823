"""The local runner's log lines name the function that wrote them, as in Lambda, where each function
has its own process: WebhookFunction's lines say WebhookFunction and its service (template.yaml's
POWERTOOLS_SERVICE_NAME), even while ProfileFunction and the sweep run in the same process at once.

Run in a fresh Python process (a handler module is imported once per process, and its logger is
built then), on the embedded moto of `segctl local ...`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter

from support import ROOT

SCRIPT = textwrap.dedent("""
    import json, os, sys, threading
    from datetime import UTC, datetime
    from pathlib import Path
    from segctl.runtime import LocalStack, scheduled_event
    from segctl.template import Template

    template = Template(Path("template.yaml"))
    stack = LocalStack(template, log_level="INFO").start()
    webhook = json.loads(Path("events/shopify/orders-create.json").read_text())
    profile = json.loads(Path("events/profile/sqs-customer-event.json").read_text())
    sweep = scheduled_event(datetime.now(UTC), template.arn("InactivitySweepFunction"))
    seen = {}

    def run(function, event, times):
        for _ in range(times):
            stack.invoke(function, event)
            seen[function] = os.environ["AWS_LAMBDA_FUNCTION_NAME"]

    for function, event in (("WebhookFunction", webhook), ("ProfileFunction", profile),
                            ("InactivitySweepFunction", sweep)):
        run(function, event, 1)
        print(json.dumps({"env_after": function, "AWS_LAMBDA_FUNCTION_NAME": seen[function]}), flush=True)
    threads = [threading.Thread(target=run, args=a) for a in
               (("WebhookFunction", webhook, 15), ("ProfileFunction", profile, 15), ("InactivitySweepFunction", sweep, 5))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stack.stop()
""")


def test_each_log_line_names_the_function_that_wrote_it_and_the_lambda_environment_is_set(template):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tools"), str(ROOT / "layers" / "segmentation")])
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    physical = {f: f"{template.stack_name}-{f}" for f in template.functions()}
    service = {f: template.environment(f)["POWERTOOLS_SERVICE_NAME"] for f in template.functions()}
    by_name = {physical[f]: f for f in physical}

    # what each function logs, whatever else runs at the time
    wrote = {"webhook": "WebhookFunction", "applied": "ProfileFunction", "sweep": "InactivitySweepFunction"}
    logs = [x for x in lines if "function_name" in x]
    assert {wrote[x["message"]] for x in logs if x["message"] in wrote} == set(wrote.values())
    for x in logs:
        function = by_name[x["function_name"]]
        assert x["service"] == service[function], x
        if x["message"] in wrote:
            assert function == wrote[x["message"]], x
    assert Counter(x["message"] for x in logs) == {"webhook": 16, "applied": 16, "sweep": 6}  # one per invocation

    # the reserved variables of the Lambda environment, set per invocation
    env_after = {x["env_after"]: x["AWS_LAMBDA_FUNCTION_NAME"] for x in lines if "env_after" in x}
    assert env_after == {f: physical[f] for f in ("WebhookFunction", "ProfileFunction", "InactivitySweepFunction")}


def test_the_local_runner_prints_no_cloudwatch_metrics_however_many_invocations(template):
    """Metrics are off locally; Powertools still prints a metric once it holds 100 values, so the
    runner lets none pile up: 110 sweeps (one SweepLagSeconds each) print no EMF document."""
    script = textwrap.dedent("""
        from datetime import UTC, datetime
        from pathlib import Path
        from segctl.runtime import LocalStack, scheduled_event
        from segctl.template import Template

        template = Template(Path("template.yaml"))
        stack = LocalStack(template, log_level="ERROR").start()
        sweep = scheduled_event(datetime.now(UTC), template.arn("InactivitySweepFunction"))
        for _ in range(110):
            stack.invoke("InactivitySweepFunction", sweep)
        print("invoked", flush=True)
        stack.stop()
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tools"), str(ROOT / "layers" / "segmentation")])
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "invoked" in out.stdout
    assert "_aws" not in out.stdout and "CloudWatchMetrics" not in out.stdout
