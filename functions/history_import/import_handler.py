"""The history import's steps in AWS (docs/import.md, "In AWS"), run by ImportStateMachine:

* ``{"action": "split", "key": "imports/..."}``: read the file, group it per person, write the parts;
* ``{"action": "apply", "job": ..., "key": "<part>", "quiet": false}``: import one part (the Distributed
  Map's item processor; a retry resumes after the people already written);
* ``{"action": "report", "job": ...}``: write ``<file>.report.json`` next to the file.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger
from segmentation import bootstrap

logger = Logger()
#: what a part's import leaves itself before the function's timeout (to record where it stopped)
MARGIN_S = 30


@logger.inject_lambda_context
def lambda_handler(event: dict, context) -> dict:
    action = event.get("action")
    jobs = bootstrap.import_jobs()
    if action == "split":
        result = jobs.split(str(event["key"]))
        logger.info("split", extra={k: result[k] for k in ("job", "parts", "quiet")})
        return result
    if action == "apply":
        result = jobs.apply(str(event["job"]), str(event["key"]), bool(event.get("quiet")),
                            time_left=lambda: context.get_remaining_time_in_millis() / 1000 - MARGIN_S)
        logger.info("part imported", extra=result)
        return result
    if action == "report":
        report = jobs.report(str(event["job"]))
        # counts only: the reasons quote file contents (they are in the report object)
        logger.info("import finished", extra={k: v for k, v in report.items() if k not in ("reasons", "source")})
        return {k: v for k, v in report.items() if k != "reasons"}
    raise ValueError(f"unknown action {action!r}: split, apply or report")
