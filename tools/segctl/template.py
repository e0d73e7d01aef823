"""template.yaml as the local runner (and the tests) see it.

Reads the SAM template with its CloudFormation short-form tags, merges Globals into
each function, and resolves the intrinsics the template uses (Ref, GetAtt, Sub) to
the physical names of the local stack. Resource names and environment always come
from here, so the local runner and the tests cannot drift from what AWS deploys.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ACCOUNT = "123456789012"  # moto's default account
DEFAULT_STACK = "segmentation-local"


#: what ``!Ref AWS::NoValue`` resolves to: dropped from the list or mapping holding it, as CloudFormation does
NO_VALUE = object()


class TemplateError(ValueError):
    """template.yaml uses something the local runner does not understand."""


class _Loader(yaml.SafeLoader):
    pass


def _short_form(loader: _Loader, suffix: str, node: yaml.Node) -> dict:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_Loader.add_multi_constructor("!", _short_form)


def load_template(path: str | Path) -> dict:
    with open(path, encoding="utf-8") as fh:
        return yaml.load(fh, Loader=_Loader)  # noqa: S506 - SafeLoader subclass


@dataclass
class Route:
    method: str  # GET, POST, ..., or ANY
    path: str  # /profiles/{profile_id}
    function: str
    auth: str | None = None

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    def pattern(self) -> re.Pattern:
        parts = []
        for seg in self.path.strip("/").split("/"):
            m = re.fullmatch(r"\{(\w+)(\+?)\}", seg)
            parts.append(f"(?P<{m.group(1)}>.+)" if m and m.group(2) else f"(?P<{m.group(1)}>[^/]+)" if m else re.escape(seg))
        return re.compile("^/" + "/".join(parts) + "/?$")

    def specificity(self) -> tuple:
        literal = sum(1 for s in self.path.split("/") if s and not s.startswith("{"))
        return (self.method != "ANY", literal, len(self.path))


@dataclass
class FunctionSpec:
    logical_id: str
    code_uri: str
    handler: str
    timeout: int
    environment: dict[str, Any]
    events: dict[str, dict] = field(default_factory=dict)

    @property
    def module(self) -> str:
        return self.handler.rsplit(".", 1)[0]

    @property
    def attr(self) -> str:
        return self.handler.rsplit(".", 1)[1]


class Template:
    """A parsed template plus the physical names its resources have in one local stack."""

    def __init__(self, path: str | Path = "template.yaml", stack_name: str = DEFAULT_STACK,
                 region: str = "us-east-1", parameters: dict[str, str] | None = None):
        self.path = Path(path)
        self.root = self.path.resolve().parent
        self.doc = load_template(self.path)
        self.stack_name = stack_name
        self.region = region
        self.parameters = {k: str(v.get("Default", "")) for k, v in self.doc.get("Parameters", {}).items()}
        self.parameters.update(parameters or {})
        self.resources: dict[str, dict] = self.doc.get("Resources", {})
        self.overrides: dict[str, str] = {}  # Ref values known only after creation (secret ARNs)

    # -- resources ------------------------------------------------------------------------
    def of_type(self, type_: str) -> dict[str, dict]:
        """Resources of a type, leaving out those whose Condition is false (as CloudFormation does)."""
        return {k: v for k, v in self.resources.items()
                if v.get("Type") == type_ and ("Condition" not in v or self.condition(v["Condition"]))}

    def condition(self, name: str) -> bool:
        return bool(self._cond(self.doc.get("Conditions", {})[name]))

    def _cond(self, expr: Any) -> Any:
        if isinstance(expr, dict) and len(expr) == 1:
            (key, arg), = expr.items()
            if key == "Fn::Equals":
                return self._cond(arg[0]) == self._cond(arg[1])
            if key == "Fn::Not":
                return not self._cond(arg[0])
            if key == "Fn::And":
                return all(self._cond(a) for a in arg)
            if key == "Fn::Or":
                return any(self._cond(a) for a in arg)
            if key == "Condition":
                return self.condition(arg)
        return self.resolve(expr)

    def physical_name(self, logical_id: str) -> str:
        res = self.resources[logical_id]
        props = res.get("Properties", {})
        t = res["Type"]
        if t == "AWS::Events::EventBus" and "Name" in props:
            return self.resolve(props["Name"])
        if t == "AWS::DynamoDB::Table" and "TableName" in props:
            return self.resolve(props["TableName"])
        if t == "AWS::SQS::Queue" and "QueueName" in props:
            return self.resolve(props["QueueName"])
        if t == "AWS::SecretsManager::Secret":
            return self.resolve(props.get("Name", f"{self.stack_name}/{logical_id}"))
        if t == "AWS::S3::Bucket":  # bucket names are lower case
            return f"{self.stack_name}-{logical_id}".lower()
        return f"{self.stack_name}-{logical_id}"

    def arn(self, logical_id: str) -> str:
        t = self.resources[logical_id]["Type"]
        name = self.physical_name(logical_id)
        r, a = self.region, ACCOUNT
        return {
            "AWS::SQS::Queue": f"arn:aws:sqs:{r}:{a}:{name}",
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{r}:{a}:table/{name}",
            "AWS::Events::EventBus": f"arn:aws:events:{r}:{a}:event-bus/{name}",
            "AWS::Events::Rule": f"arn:aws:events:{r}:{a}:rule/{name}",
            "AWS::S3::Bucket": f"arn:aws:s3:::{name}",
        }.get(t, f"arn:aws:local:{r}:{a}:{name}")

    def queue_url(self, logical_id: str, endpoint: str) -> str:
        return f"{endpoint.rstrip('/')}/{ACCOUNT}/{self.physical_name(logical_id)}"

    # -- intrinsics -----------------------------------------------------------------------
    def ref(self, name: str) -> str:
        pseudo = {
            "AWS::StackName": self.stack_name, "AWS::Region": self.region, "AWS::AccountId": ACCOUNT,
            "AWS::URLSuffix": "amazonaws.com", "AWS::Partition": "aws",
        }
        if name in pseudo:
            return pseudo[name]
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.parameters:
            return self.parameters[name]
        if name in self.overrides:
            return self.overrides[name]
        if name not in self.resources:
            raise TemplateError(f"!Ref {name}: no such parameter or resource")
        t = self.resources[name]["Type"]
        if t == "AWS::SecretsManager::Secret":
            return self.physical_name(name)  # the ARN once created (see overrides)
        return self.physical_name(name)

    def get_att(self, logical_id: str, attr: str) -> str:
        if attr == "Arn":
            return self.arn(logical_id)
        if attr in ("QueueName", "Name"):
            return self.physical_name(logical_id)
        raise TemplateError(f"!GetAtt {logical_id}.{attr} is not supported locally")

    def resolve(self, value: Any) -> Any:
        if isinstance(value, dict):
            if len(value) == 1:
                (key, arg), = value.items()
                if key == "Ref":
                    return self.ref(arg)
                if key == "Fn::GetAtt":
                    return self.get_att(*arg)
                if key == "Fn::Sub":
                    return self._sub(arg)
                if key == "Fn::If":
                    name, then, otherwise = arg
                    return self.resolve(then if self.condition(name) else otherwise)
                if key.startswith("Fn::"):
                    raise TemplateError(f"{key} is not supported by the local runner")
            resolved = {k: self.resolve(v) for k, v in value.items()}
            return {k: v for k, v in resolved.items() if v is not NO_VALUE}
        if isinstance(value, list):
            return [v for v in (self.resolve(v) for v in value) if v is not NO_VALUE]
        return value

    def _sub(self, arg: Any) -> str:
        text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

        def one(m: re.Match) -> str:
            name = m.group(1)
            if name in extra:
                return str(self.resolve(extra[name]))
            if "." in name and not name.startswith("AWS::"):
                return str(self.get_att(*name.split(".", 1)))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}!]+)\}", one, text)

    # -- functions and routes ---------------------------------------------------------------
    def functions(self) -> dict[str, FunctionSpec]:
        glob = self.doc.get("Globals", {}).get("Function", {})
        out = {}
        for lid, res in self.of_type("AWS::Serverless::Function").items():
            props = copy.deepcopy(res.get("Properties", {}))
            env = dict(glob.get("Environment", {}).get("Variables", {}))
            env.update(props.get("Environment", {}).get("Variables", {}))
            out[lid] = FunctionSpec(
                logical_id=lid,
                code_uri=str(self.root / props.get("CodeUri", glob.get("CodeUri", "."))),
                handler=props.get("Handler", glob.get("Handler")),
                timeout=int(props.get("Timeout", glob.get("Timeout", 3))),
                environment=env,
                events=props.get("Events", {}),
            )
        return out

    def routes(self) -> list[Route]:
        routes = []
        for fn in self.functions().values():
            for ev in fn.events.values():
                if ev.get("Type") != "HttpApi":
                    continue
                p = ev.get("Properties", {})
                auth = (p.get("Auth") or {}).get("Authorizer")
                routes.append(Route(p.get("Method", "ANY").upper(), p.get("Path", "/"), fn.logical_id, auth))
        return sorted(routes, key=Route.specificity, reverse=True)

    def sqs_sources(self) -> list[tuple[str, str, dict]]:
        """(function logical id, queue logical id, event properties) per SQS event source."""
        out = []
        for fn in self.functions().values():
            for ev in fn.events.values():
                if ev.get("Type") == "SQS":
                    q = ev["Properties"]["Queue"]
                    queue_id = q["Fn::GetAtt"][0] if isinstance(q, dict) and "Fn::GetAtt" in q else None
                    if queue_id is None:
                        raise TemplateError(f"{fn.logical_id}: SQS Queue must be !GetAtt <Queue>.Arn")
                    out.append((fn.logical_id, queue_id, ev["Properties"]))
        return out

    def schedules(self) -> list[tuple[str, str, str]]:
        """(function logical id, event name, resolved schedule expression) per Schedule event."""
        out = []
        for fn in self.functions().values():
            for name, ev in fn.events.items():
                if ev.get("Type") in ("Schedule", "ScheduleV2"):
                    props = ev.get("Properties", {})
                    out.append((fn.logical_id, name, str(self.resolve(props.get("Schedule") or props.get("ScheduleExpression")))))
        return out

    def environment(self, function: str) -> dict[str, str]:
        resolved = {k: self.resolve(v) for k, v in self.functions()[function].environment.items()}
        return {k: str(v) for k, v in resolved.items() if v is not NO_VALUE}
