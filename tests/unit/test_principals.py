"""A record's owner: an IAM principal named so that it stays the same across sessions (classifier.aws.principals)."""

from __future__ import annotations

import pytest

from classifier.aws.principals import MAX_OWNER_LENGTH, is_owner, principal_owner


@pytest.mark.parametrize(("arn", "owner"), [
    # A role's sessions (an ECS task, a Lambda instance, a CLI login) are one owner: the role.
    ("arn:aws:sts::123456789012:assumed-role/dashboard-task/8f2c0a1b",
     "arn:aws:sts::123456789012:assumed-role/dashboard-task"),
    ("arn:aws:sts::123456789012:assumed-role/ci@example+bot/a.session=1,x",
     "arn:aws:sts::123456789012:assumed-role/ci@example+bot"),
    ("arn:aws-us-gov:sts::123456789012:assumed-role/r/s", "arn:aws-us-gov:sts::123456789012:assumed-role/r"),
    # Users, roots and federated users have no session part to drop.
    ("arn:aws:iam::123456789012:user/bob", "arn:aws:iam::123456789012:user/bob"),
    ("arn:aws:iam::123456789012:root", "arn:aws:iam::123456789012:root"),
    ("arn:aws:sts::123456789012:federated-user/carol", "arn:aws:sts::123456789012:federated-user/carol"),
    # An assumed role without a session name is not what STS issues: left as it is.
    ("arn:aws:sts::123456789012:assumed-role/r", "arn:aws:sts::123456789012:assumed-role/r"),
])
def test_an_assumed_roles_sessions_share_one_owner(arn: str, owner: str) -> None:
    assert principal_owner(arn) == owner


@pytest.mark.parametrize(("value", "ok"), [
    ("arn:aws:iam::123456789012:user/bob", True),
    ("3f1c2a6d-7e80-4b1e-9a55-0c6d2b8e1f42", True),  # a Cognito sub
    ("a1b2c3d4e5", True),  # an API key id
    ("none", True),
    ("x" * MAX_OWNER_LENGTH, True),
    ("x" * (MAX_OWNER_LENGTH + 1), False),
    ("", False),
    ("two words", False),
    ("caf\u00e9", False),
    ("line\nbreak", False),
    (42, False),
    (None, False),
])
def test_what_may_be_an_owner(value: object, ok: bool) -> None:
    assert is_owner(value) is ok


def test_a_bulk_batch_carries_the_owner_its_job_was_started_with() -> None:
    from classifier.aws.bulk_worker import BatchWorker
    from classifier.errors import InvalidParameter

    batch = {"Items": [{"Key": "bulk/a.jpg"}], "BatchInput": {"bucket": "b", "top_k": 3,
                                                                 "owner": "arn:aws:iam::123456789012:user/ops"}}
    assert BatchWorker.read_event(batch) == ("b", 3, ["bulk/a.jpg"], "arn:aws:iam::123456789012:user/ops")
    del batch["BatchInput"]["owner"]  # type: ignore[attr-defined]
    assert BatchWorker.read_event(batch)[3] is None
    batch["BatchInput"]["owner"] = "not an owner"  # type: ignore[index]
    with pytest.raises(InvalidParameter, match="owner"):
        BatchWorker.read_event(batch)
