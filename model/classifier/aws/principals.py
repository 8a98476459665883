"""Who owns a record: the caller's identity, named so that it stays the same across sessions.

A record's ``owner`` is the IAM principal ARN of a SigV4 caller, the ``sub`` of a
Cognito user, the id of an API key, or ``none`` (``api_auth=none``); records made
on a laptop have no owner. API Gateway, the Function URL and STS name an IAM
role's caller ``arn:aws:sts::<account>:assumed-role/<role>/<session>``, whose
session part changes with every assumption (each ECS task, each Lambda
instance, each CLI login) while the permissions stay the role's. So the owner
is the role: ``arn:aws:sts::<account>:assumed-role/<role>``, the session name
dropped; whoever may assume the role holds the same grants anyway.
"""

from __future__ import annotations

import re

# What api_auth=none calls every caller: they all share one owner, as they share the API.
NO_AUTH_OWNER = "none"
# IAM's own bound on an ARN; nothing longer is an owner.
MAX_OWNER_LENGTH = 2048
_ASSUMED_ROLE_RE = re.compile(r"^(arn:aws[a-z-]*:sts::\d{12}:assumed-role/[\w+=,.@-]+)/[\w+=,.@-]+$")
# Printable ASCII without spaces: ARNs, UUIDs (Cognito subs), API key ids.
_OWNER_RE = re.compile(rf"^[\x21-\x7e]{{1,{MAX_OWNER_LENGTH}}}$")


def principal_owner(arn: str) -> str:
    """The owner an IAM principal ARN stands for: an assumed role's session name dropped, else the ARN."""
    match = _ASSUMED_ROLE_RE.fullmatch(arn)
    return match.group(1) if match else arn


def is_owner(value: object) -> bool:
    """Whether ``value`` can be an owner: printable ASCII, no spaces, at most ``MAX_OWNER_LENGTH`` characters."""
    return isinstance(value, str) and _OWNER_RE.fullmatch(value) is not None
