"""template.yaml is ready to run in production, and stays so (issue 16; docs/operations.md).

Each rule is checked over what the template declares (every function, every alarm, every queue,
every rule target, every route), never over a list of names copied here: a function, queue, rule
or route added later without its log group, alarm, retry policy or throttling fails a test.
"""

from __future__ import annotations

import json
import logging
import re
import tomllib
from datetime import UTC, datetime, timedelta

import pytest
from segctl.runtime import context_for, load_handler, scheduled_event
from segctl.template import Template, load_template
from segmentation import bootstrap
from support import ROOT, TEMPLATE
from test_profile_function import order_event

DOC = load_template(TEMPLATE)
T = Template(TEMPLATE)
RESOURCES: dict[str, dict] = DOC["Resources"]
PARAMETERS: dict[str, dict] = DOC["Parameters"]
GLOBALS = DOC["Globals"]["Function"]

#: SAM event types that become an EventBridge rule with the resource as its target
RULE_EVENTS = {"Schedule", "EventBridgeRule", "CloudWatchEvent"}


def of_type(type_: str) -> dict[str, dict]:
    """Every resource of a type, conditional ones included (a condition may be true in a deployment)."""
    return {k: v for k, v in RESOURCES.items() if v["Type"] == type_}


FUNCTIONS = of_type("AWS::Serverless::Function")
ALARMS = of_type("AWS::CloudWatch::Alarm")
QUEUES = of_type("AWS::SQS::Queue")


def alarms_on(namespace: str, metric: str, dimension: str, value) -> list[dict]:
    return [a["Properties"] for a in ALARMS.values()
            if a["Properties"]["Namespace"] == namespace and a["Properties"]["MetricName"] == metric
            and {"Name": dimension, "Value": value} in a["Properties"].get("Dimensions", [])]


def consumed_queues() -> set[str]:
    return {queue for _, queue, _ in T.sqs_sources()}


def rule_targets() -> list[tuple[str, str, dict]]:
    """(rule, target id, target) for every EventBridge rule target: the template's own rules, and the
    rules SAM generates from a function's or a state machine's events (named <resource><event>)."""
    out = [(name, t["Id"], t) for name, rule in of_type("AWS::Events::Rule").items()
           for t in rule["Properties"]["Targets"]]
    for name, res in RESOURCES.items():
        if res["Type"] in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine"):
            for event, ev in res["Properties"].get("Events", {}).items():
                if ev["Type"] in RULE_EVENTS:
                    out.append((f"{name}{event}", name, ev["Properties"]))
    return out


# -- logs ------------------------------------------------------------------------------------------


def test_every_function_logs_to_its_own_group_kept_for_the_retention_parameter():
    groups = {json.dumps(g["Properties"]["LogGroupName"]): g["Properties"] for g in of_type("AWS::Logs::LogGroup").values()}
    for name in FUNCTIONS:
        group = groups.get(json.dumps({"Fn::Sub": f"/aws/lambda/${{{name}}}"}))
        assert group, f"{name} has no AWS::Logs::LogGroup named /aws/lambda/${{{name}}}: its logs never expire"
        assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name
    for name, g in of_type("AWS::Logs::LogGroup").items():  # the API's access log too
        assert g["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name
    retention = PARAMETERS["LogRetentionDays"]
    assert retention["Default"] in retention["AllowedValues"]


def test_logs_are_json_and_lambda_keeps_the_levels_powertools_writes():
    config = GLOBALS["LoggingConfig"]
    assert config["LogFormat"] == "JSON"
    mapping, key, field = config["ApplicationLogLevel"]["Fn::FindInMap"]
    assert key == {"Ref": "LogLevel"}
    lambda_levels = {"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"}
    for level in PARAMETERS["LogLevel"]["AllowedValues"]:
        mapped = DOC["Mappings"][mapping][level][field]
        assert mapped in lambda_levels, level
        # Lambda drops application lines below its level: it must be the level Powertools logs at
        assert logging.getLevelName(mapped) == logging.getLevelName(level), (level, mapped)


# -- alarms ----------------------------------------------------------------------------------------


def test_every_alarm_notifies_the_alarm_topic_when_it_fires_and_when_it_clears():
    topic = next(iter(of_type("AWS::SNS::Topic")))
    assert ALARMS
    for name, alarm in ALARMS.items():
        assert {"Ref": topic} in alarm["Properties"].get("AlarmActions", []), f"{name} notifies nobody"
        assert {"Ref": topic} in alarm["Properties"].get("OKActions", []), name


@pytest.mark.parametrize("email, subscribed", [("", False), ("ops@example.com", True)])
def test_the_alarm_email_is_subscribed_only_when_given(email, subscribed):
    t = Template(TEMPLATE, parameters={"AlarmEmail": email})
    subscriptions = t.of_type("AWS::SNS::Subscription")
    assert bool(subscriptions) is subscribed
    for sub in subscriptions.values():
        assert sub["Properties"]["Protocol"] == "email"
        assert t.resolve(sub["Properties"]["Endpoint"]) == email
        assert sub["Properties"]["TopicArn"] == {"Ref": next(iter(of_type("AWS::SNS::Topic")))}


@pytest.mark.parametrize("value, accepted", [("", True), ("ops@example.com", True), ("ops.example.com", False),
                                             ("ops@example", False), ("a b@example.com", False)])
def test_the_alarm_email_parameter_refuses_what_is_not_an_address(value, accepted):
    pattern = PARAMETERS["AlarmEmail"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, value)) is accepted


def test_every_queue_no_function_reads_is_a_dead_letter_queue_with_an_alarm():
    redrive = {q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
               for q in QUEUES.values() if "RedrivePolicy" in q["Properties"]}
    rule_dlqs = {t["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0] for _, _, t in rule_targets() if "DeadLetterConfig" in t}
    unread = set(QUEUES) - consumed_queues()
    assert unread == redrive | rule_dlqs, "a queue nothing reads that is no dead-letter queue, or the reverse"
    for queue in unread:
        [alarm] = alarms_on("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName",
                            {"Fn::GetAtt": [queue, "QueueName"]})
        # the first message fires it
        assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold"), queue


@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
def test_every_function_has_an_errors_and_a_throttles_alarm(metric):
    for name in FUNCTIONS:
        found = alarms_on("AWS/Lambda", metric, "FunctionName", {"Ref": name})
        assert len(found) == 1, f"{name}: {len(found)} {metric} alarms"
        alarm = found[0]
        assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == ("Sum", 0, "GreaterThanThreshold")


def test_the_http_api_5xx_alarm_watches_the_api():
    [api] = of_type("AWS::Serverless::HttpApi")
    [alarm] = alarms_on("AWS/ApiGateway", "5xx", "ApiId", {"Ref": api})
    assert alarm["Statistic"] == "Sum"


def test_the_profile_queue_age_alarm_watches_the_queue_profile_function_reads():
    [queue] = [q for fn, q, _ in T.sqs_sources() if fn == "ProfileFunction"]
    [alarm] = alarms_on("AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", {"Fn::GetAtt": [queue, "QueueName"]})
    assert alarm["Threshold"] == {"Ref": "ProfileQueueAgeAlarmSeconds"}
    assert alarm["Statistic"] == "Maximum"


def sweep_lag_alarm() -> dict:
    [alarm] = [a["Properties"] for a in ALARMS.values() if a["Properties"]["MetricName"] == "SweepLagSeconds"]
    return alarm


def test_the_sweep_lag_alarm_fires_when_the_sweep_falls_behind_or_stops():
    alarm = sweep_lag_alarm()
    assert alarm["Threshold"] == {"Ref": "SweepLagAlarmSeconds"}
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["TreatMissingData"] == "breaching"  # no run, no data: the sweep stopped


def _emf(text: str) -> list[dict]:
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{") and '"_aws"' in line]
    return [line for line in lines if "SweepLagSeconds" in line]


def test_the_sweep_publishes_its_lag_as_the_metric_the_alarm_watches(fakes, monkeypatch, capsys):
    """Two customers due at different instants, swept an hour after the older one: the metric says
    3600 s, under the namespace and dimensions of SweepLagAlarm; the next run, with nothing due, 0."""
    for key, value in fakes.template.environment("InactivitySweepFunction").items():
        monkeypatch.setenv(key, value)  # the sweep's own environment (its service name), as in Lambda
    handler = load_handler(fakes.template.functions()["InactivitySweepFunction"], environment=16)
    service = bootstrap.profile_service()
    service.apply(order_event(1, email="old@example.com", hours_ago=5))
    service.apply(order_event(2, email="new@example.com", hours_ago=1))
    due = {e: bootstrap.repository().find(f"email#{e}").next_due_at for e in ("old@example.com", "new@example.com")}
    assert due["old@example.com"] < due["new@example.com"]
    context = context_for(fakes.template, "InactivitySweepFunction")
    when = datetime.fromtimestamp(due["new@example.com"] + 60, UTC)  # both due; the older waited longer
    capsys.readouterr()
    summary = handler(scheduled_event(when, "arn:aws:events:us-east-1:123456789012:rule/s"), context)
    lag = int(when.timestamp()) - due["old@example.com"]
    assert summary["lag_seconds"] == lag and summary["evaluated"] == 2
    [emf] = _emf(capsys.readouterr().out)
    alarm = sweep_lag_alarm()
    [directive] = emf["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == fakes.template.resolve(alarm["Namespace"])
    assert directive["Namespace"] == fakes.template.environment("InactivitySweepFunction")["POWERTOOLS_METRICS_NAMESPACE"]
    dimensions = {d["Name"]: fakes.template.resolve(d["Value"]) for d in alarm["Dimensions"]}
    assert [sorted(ds) for ds in directive["Dimensions"]] == [sorted(dimensions)]
    assert {k: emf[k] for k in dimensions} == dimensions
    assert [m["Name"] for m in directive["Metrics"]] == [alarm["MetricName"]]
    assert emf["SweepLagSeconds"] == [lag]

    # nothing due any more: still a data point (0), so that silence means a stopped sweep
    handler(scheduled_event(when + timedelta(minutes=1), "arn:aws:events:us-east-1:123456789012:rule/s"), context)
    [emf] = _emf(capsys.readouterr().out)
    assert emf["SweepLagSeconds"] == [0]


def test_the_sweep_lag_counts_only_profiles_that_are_due(fakes):
    """A profile whose due instant lies ahead adds no lag, however early the sweep runs."""
    bootstrap.profile_service().apply(order_event(1, email="ahead@example.com", hours_ago=1))
    due = bootstrap.repository().find("email#ahead@example.com").next_due_at
    report = bootstrap.sweep().run(due - 1)
    assert (report.evaluated, report.lag) == (0, 0)
    report = bootstrap.sweep().run(due + 7)
    assert (report.evaluated, report.lag) == (1, 7)


# -- HTTP API ----------------------------------------------------------------------------------------


def test_every_route_is_throttled_webhooks_apart_from_management():
    [api] = of_type("AWS::Serverless::HttpApi").values()
    props = api["Properties"]
    default, per_route = props["DefaultRouteSettings"], props["RouteSettings"]
    keys = {r.route_key for r in T.routes()}
    assert set(per_route) <= keys, f"throttling for routes that do not exist: {set(per_route) - keys}"
    for route in T.routes():
        settings = per_route.get(route.route_key, default)
        kind = "Webhook" if route.path.startswith("/webhooks/") else "Management"
        assert settings == {"ThrottlingRateLimit": {"Ref": f"{kind}ThrottleRate"},
                            "ThrottlingBurstLimit": {"Ref": f"{kind}ThrottleBurst"}}, route.route_key
    for kind in ("Webhook", "Management"):
        assert PARAMETERS[f"{kind}ThrottleBurst"]["Default"] >= PARAMETERS[f"{kind}ThrottleRate"]["Default"]


def test_the_api_writes_json_access_logs_without_personal_data():
    [api] = of_type("AWS::Serverless::HttpApi").values()
    settings = api["Properties"]["AccessLogSettings"]
    group = settings["DestinationArn"]["Fn::GetAtt"][0]
    assert RESOURCES[group]["Type"] == "AWS::Logs::LogGroup"
    fields = json.loads(settings["Format"])  # one JSON object per line
    assert {"$context.requestId", "$context.routeKey", "$context.status"} <= set(fields.values())
    for personal in ("$context.identity.sourceIp", "$context.path", "$context.identity.userAgent"):
        assert personal not in settings["Format"], personal


# -- EventBridge ---------------------------------------------------------------------------------------


def test_every_rule_target_retries_then_dead_letters_to_a_queue_eventbridge_may_write():
    targets = rule_targets()
    assert targets
    [policy] = [p["Properties"] for p in of_type("AWS::SQS::QueuePolicy").values()
                if p["Properties"]["Queues"] == [{"Ref": "EventDeliveryDeadLetterQueue"}]]
    [statement] = policy["PolicyDocument"]["Statement"]
    sources = json.dumps(statement["Condition"]["ArnEquals"]["aws:SourceArn"])
    for rule, target, props in targets:
        retry = props.get("RetryPolicy", {})
        assert {"MaximumRetryAttempts", "MaximumEventAgeInSeconds"} <= set(retry), f"{rule} -> {target}: no retry policy"
        dlq = props.get("DeadLetterConfig", {}).get("Arn")
        assert dlq == {"Fn::GetAtt": ["EventDeliveryDeadLetterQueue", "Arn"]}, f"{rule} -> {target}: no dead-letter queue"
        # without this, EventBridge cannot put the failed event in the queue
        assert json.dumps({"Fn::GetAtt": [rule, "Arn"]}) in sources, f"{rule} may not write to the dead-letter queue"


# -- tracing, concurrency ------------------------------------------------------------------------------


@pytest.mark.parametrize("value, mode", [("true", "Active"), ("false", "PassThrough")])
def test_tracing_follows_the_parameter(value, mode):
    (condition, active, passthrough), = GLOBALS["Tracing"].values()
    t = Template(TEMPLATE, parameters={"EnableTracing": value})
    assert (active if t.condition(condition) else passthrough) == mode
    assert PARAMETERS["EnableTracing"]["Default"] == "false"


def test_every_sqs_event_source_caps_its_concurrency_with_a_parameter():
    sources = T.sqs_sources()
    assert sources
    for function, queue, props in sources:
        cap = props.get("ScalingConfig", {}).get("MaximumConcurrency")
        assert isinstance(cap, dict) and "Ref" in cap, f"{function} <- {queue}: no concurrency cap parameter"
        param = PARAMETERS[cap["Ref"]]
        assert param["MinValue"] >= 2 and param["Default"] >= param["MinValue"]  # Lambda's minimum is 2
        assert param["MaxValue"] <= 1000


# -- deploying -----------------------------------------------------------------------------------------


def test_every_parameter_explains_itself_and_is_documented():
    operations = (ROOT / "docs" / "operations.md").read_text()
    for name, param in PARAMETERS.items():
        assert len(param.get("Description", "")) > 20, f"{name}: no description"
        assert f"`{name}`" in operations, f"docs/operations.md does not explain {name}"


def test_samconfig_deploys_with_a_reviewed_changeset():
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    deploy = config["default"]["deploy"]["parameters"]
    assert deploy["confirm_changeset"] is True
    assert deploy["resolve_s3"] is True
    assert "CAPABILITY_IAM" in deploy["capabilities"].split()
    assert config["default"]["global"]["parameters"]["stack_name"]
    validate = config["default"]["validate"]["parameters"]
    assert validate["lint"] is True and validate["region"]  # `sam validate` needs a region
