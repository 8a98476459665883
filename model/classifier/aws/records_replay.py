"""The scheduled replay in AWS: a function that writes deferred records back, every few minutes.

The same work as ``python -m classifier records replay``, run by an EventBridge schedule
(``lambda_docker/records.py``) from the API's image, so records deferred while DynamoDB
throttled return without anyone running a command. What DynamoDB still refuses stays
deferred for the next run; the function fails (and its alarm fires) only when it cannot
reach either place.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from classifier.config import Settings
from classifier.observability import logs
from classifier.records import open_record_store
from classifier.records.deferral import open_deferral, replay

log = logging.getLogger(__name__)
# At most this many a run: a run ends well inside the function's timeout, the next one goes on.
RECORDS_PER_RUN = 20_000


def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, int]:
    """Lambda entry point of the scheduled replay."""
    logs.configure()
    settings = Settings.from_env()
    counts = replay(open_record_store(settings, defer=False), open_deferral(settings), limit=RECORDS_PER_RUN)
    log.info("records replayed", extra={"replayed": counts.replayed, "failed": counts.failed,
                                        "unreadable": counts.unreadable})
    return {"replayed": counts.replayed, "failed": counts.failed, "unreadable": counts.unreadable}
