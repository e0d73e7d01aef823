"""Runs a state machine of template.yaml in this process, as Step Functions would, for the states
and fields the template uses (the history import's: Choice with StringMatches, Task on
``lambda:invoke`` with Parameters/ResultSelector/OutputPath/ResultPath/Retry/Catch, and a
DISTRIBUTED Map reading ``s3:listObjectsV2`` with an ItemSelector). moto does not run Distributed
Maps; this lets tests and the local runner drive the real definition, so a change to it that the
functions do not follow fails here. Anything else in a definition is refused, not guessed.
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Callable
from typing import Any

from .template import Template


class StateMachineError(RuntimeError):
    pass


def _path(data: Any, path: str, context: dict) -> Any:
    """A JSONPath of the simple kind ASL definitions use: ``$``, ``$.a.b``, ``$$.Map.Item.Value.Key``."""
    root, rest = (context, path[2:]) if path.startswith("$$") else (data, path[1:])
    for part in [p for p in rest.split(".") if p]:
        root = root[part]
    return root


def _parameters(template: Any, data: Any, context: dict) -> Any:
    if isinstance(template, dict):
        out = {}
        for key, value in template.items():
            if key.endswith(".$"):
                out[key[:-2]] = _path(data, value, context)
            else:
                out[key] = _parameters(value, data, context)
        return out
    if isinstance(template, list):
        return [_parameters(v, data, context) for v in template]
    return template


def _set(data: Any, path: str | None, value: Any) -> Any:
    if path is None:
        return data
    if path == "$":
        return value
    out = copy.deepcopy(data)
    target = out
    parts = path[2:].split(".")
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value
    return out


class StateMachine:
    def __init__(self, template: Template, logical_id: str, invoke: Callable[[str, dict], Any],
                 list_objects: Callable[[str, str], list[dict]]) -> None:
        """``invoke(function logical id, payload)`` runs a function; ``list_objects(bucket, prefix)``
        returns S3 ``Contents`` entries (``Key``...)."""
        props = template.resources[logical_id]["Properties"]
        substitutions = {k: template.resolve(v) for k, v in props.get("DefinitionSubstitutions", {}).items()}
        self.functions = {template.get_att(lid, "Arn"): lid for lid in template.functions()}
        self.definition = self._substitute(props["Definition"], substitutions)
        self.invoke = invoke
        self.list_objects = list_objects
        self.template = template

    def _substitute(self, value: Any, subs: dict[str, str]) -> Any:
        if isinstance(value, str):
            for k, v in subs.items():
                value = value.replace("${" + k + "}", str(v))
            return value
        if isinstance(value, dict):
            return {k: self._substitute(v, subs) for k, v in value.items()}
        if isinstance(value, list):
            return [self._substitute(v, subs) for v in value]
        return value

    def run(self, data: Any) -> Any:
        return self._run(self.definition, data, {})

    def _run(self, machine: dict, data: Any, context: dict) -> Any:
        name = machine["StartAt"]
        while True:
            state = machine["States"][name]
            kind = state["Type"]
            if kind == "Succeed":
                return data
            if kind == "Choice":
                name = next((c["Next"] for c in state["Choices"] if self._matches(c, data, context)), state.get("Default"))
                if name is None:
                    raise StateMachineError("States.NoChoiceMatched")
                continue
            try:
                if kind == "Task":
                    result = self._task(state, data, context)
                elif kind == "Map":
                    result = self._map(state, data, context)
                else:
                    raise StateMachineError(f"state type {kind} is not run here")
            except StateMachineError:
                raise
            except Exception as exc:  # noqa: BLE001 - Step Functions catches every task error
                catch = next((c for c in state.get("Catch", []) if "States.ALL" in c["ErrorEquals"]
                              or type(exc).__name__ in c["ErrorEquals"]), None)
                if catch is None:
                    raise
                data = _set(data, catch.get("ResultPath", "$"), {"Error": type(exc).__name__, "Cause": str(exc)})
                name = catch["Next"]
                continue
            if "ResultSelector" in state:
                result = _parameters(state["ResultSelector"], result, context)
            data = _set(data, state.get("ResultPath", "$"), result)
            if "OutputPath" in state:
                data = _path(data, state["OutputPath"], context)
            if state.get("End"):
                return data
            name = state["Next"]

    @staticmethod
    def _matches(choice: dict, data: Any, context: dict) -> bool:
        if "StringMatches" in choice:
            value = _path(data, choice["Variable"], context)
            return isinstance(value, str) and fnmatch.fnmatchcase(value, choice["StringMatches"])
        raise StateMachineError(f"choice rule {sorted(choice)} is not run here")

    def _task(self, state: dict, data: Any, context: dict) -> Any:
        if state["Resource"] != "arn:aws:states:::lambda:invoke":
            raise StateMachineError(f"task resource {state['Resource']} is not run here")
        params = _parameters(state["Parameters"], data, context)
        function = self.functions[params["FunctionName"]]
        attempts = 1 + max((r.get("MaxAttempts", 3) for r in state.get("Retry", [])
                            if "States.ALL" in r["ErrorEquals"]), default=0)
        for attempt in range(attempts):
            try:
                return {"Payload": self.invoke(function, params["Payload"]), "StatusCode": 200}
            except Exception:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _map(self, state: dict, data: Any, context: dict) -> list:
        reader = state["ItemReader"]
        if reader["Resource"] != "arn:aws:states:::s3:listObjectsV2":
            raise StateMachineError(f"item reader {reader['Resource']} is not run here")
        params = _parameters(reader["Parameters"], data, context)
        items = self.list_objects(params["Bucket"], params.get("Prefix", ""))
        out = []
        for index, item in enumerate(items):
            ctx = {"Map": {"Item": {"Index": index, "Value": item}}}
            value = _parameters(state["ItemSelector"], data, ctx) if "ItemSelector" in state else item
            out.append(self._run(state["ItemProcessor"], value, ctx))
        return out
