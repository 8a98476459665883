"""Records belong to their caller: two SigV4 identities, and an operator with the read-all grant,
through API Gateway with ``AWS_IAM`` on loopback (``helpers.sigv4.IamRestApi``).

The front door verifies each caller's signature with that caller's own secret, authorizes
``execute-api:Invoke`` on the path against the grants of the policies the stack makes
(``classifier.api.grants``, which ``lambda_docker/auth.py`` turns into ``ApiInvokePolicyArn``
and ``ApiReadAllPolicyArn``), and invokes the Lambda handler with a REST event whose
``requestContext.identity`` names the caller, as API Gateway does. The handler presigns
uploads into moto's S3 server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from classifier.api.grants import invoke_grants, read_all_grants
from classifier.client.api import ClassifierClient
from classifier.client.transport import RequestFailed, RetryPolicy

from helpers.aws import new_bucket, point_boto3_at, s3_client
from helpers.lambda_events import load_handler
from helpers.photos import jpeg
from helpers.sigv4 import IamRestApi, Principal, iam_rest_api
from helpers.stores import copy_store, stored_records

REGION = "eu-west-1"
FAST_RETRY = RetryPolicy(attempts=2, base=0.05, cap=0.2)
# Alice signs with a role session (her records are the role's, whatever the session), Bob as an IAM user.
ALICE = Principal("AKIDALICE0000000001", "alice-secret", "arn:aws:sts::123456789012:assumed-role/alice/laptop-1",
                  grants=invoke_grants())
ALICE_OWNER = "arn:aws:sts::123456789012:assumed-role/alice"
BOB = Principal("AKIDBOB000000000002", "bob-secret", "arn:aws:iam::123456789012:user/bob", grants=invoke_grants())
# An operator with both policies attached: ApiInvokePolicyArn and ApiReadAllPolicyArn.
OPERATOR = Principal("AKIDOPERATOR0000003", "operator-secret", "arn:aws:iam::123456789012:role/operator",
                     grants=[*invoke_grants(), *read_all_grants()])


@pytest.fixture(scope="module")
def front_door(published_store: Path, tmp_path_factory: pytest.TempPathFactory,
               s3_endpoint: str) -> Iterator[tuple[IamRestApi, Path, str]]:
    store = copy_store(published_store, tmp_path_factory.mktemp("ownership") / "store")
    bucket = new_bucket(s3_endpoint)
    with pytest.MonkeyPatch.context() as monkeypatch:
        point_boto3_at(monkeypatch, s3_endpoint, UPLOADS_BUCKET=bucket)
        handler = load_handler(monkeypatch, store, UPLOADS_BUCKET=bucket)
        with iam_rest_api(handler, region=REGION, principals=[ALICE, BOB, OPERATOR]) as api:
            yield api, store, bucket


def client(api: IamRestApi, principal: Principal, monkeypatch: pytest.MonkeyPatch) -> ClassifierClient:
    """A client signing as ``principal`` (the signer takes the credentials it finds now)."""
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", principal.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", principal.secret_key)
    return ClassifierClient(api.url, sigv4=True, region=REGION, service="execute-api", retry=FAST_RETRY)


def error_of(call: object) -> tuple[int | None, str]:
    assert isinstance(call, RequestFailed)
    return call.status, call.code


def test_each_identity_lists_and_reads_only_its_own_records(front_door: tuple[IamRestApi, Path, str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    api, _, _ = front_door
    alice, bob = client(api, ALICE, monkeypatch), client(api, BOB, monkeypatch)
    # GIVEN one classification by each
    mine = alice.classify_bytes(jpeg("chelsea"), "image/jpeg")
    theirs = bob.classify_bytes(jpeg("coffee"), "image/jpeg")
    # THEN each record carries its caller (Alice's role, without the session name)
    assert (mine["owner"], theirs["owner"]) == (ALICE_OWNER, BOB.arn)
    # AND each lists its own records only
    assert mine["id"] in [r["id"] for r in alice.classifications(limit=100).items]
    assert all(r["owner"] == ALICE_OWNER for r in alice.classifications(limit=100).items)
    assert [r["id"] for r in bob.classifications(limit=100).items] == [theirs["id"]]
    # AND reads its own by id, while the other's id is the 404 of an unknown one
    assert alice.request("GET", f"/classifications/{mine['id']}").status == 200
    for reader, other in ((alice, theirs), (bob, mine)):
        response = reader.request("GET", f"/classifications/{other['id']}")
        assert response.status == 404 and response.json()["error"]["code"] == "not_found"


def test_classifying_another_callers_upload_is_refused(front_door: tuple[IamRestApi, Path, str],
                                                       monkeypatch: pytest.MonkeyPatch, s3_endpoint: str) -> None:
    api, store, bucket = front_door
    alice, bob = client(api, ALICE, monkeypatch), client(api, BOB, monkeypatch)
    # GIVEN an image Alice uploaded through her presigned POST
    image = jpeg("rocket")
    upload = alice.create_upload("image/jpeg", len(image))
    alice.upload(upload, image)
    stored = s3_client(s3_endpoint).head_object(Bucket=bucket, Key=upload["key"])
    assert stored["Metadata"] == {"owner": ALICE_OWNER}  # pinned by the POST policy
    before = len(stored_records(store))
    # WHEN Bob classifies her key
    with pytest.raises(RequestFailed) as refused:
        bob.classify_key(upload["key"])
    # THEN it is the 404 of a missing key, and nothing is stored; Alice herself may classify it
    assert error_of(refused.value) == (404, "not_found")
    assert len(stored_records(store)) == before
    result = alice.classify_key(upload["key"])
    assert (result["s3_key"], result["owner"]) == (upload["key"], ALICE_OWNER)


def test_the_read_all_grant_sees_both_and_nobody_else_has_it(front_door: tuple[IamRestApi, Path, str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    api, _, _ = front_door
    alice, bob = client(api, ALICE, monkeypatch), client(api, BOB, monkeypatch)
    operator = client(api, OPERATOR, monkeypatch)
    mine = alice.classify_bytes(jpeg("astronaut"), "image/jpeg")
    theirs = bob.classify_bytes(jpeg("chelsea"), "image/jpeg")
    # WHEN the operator reads every caller's records
    everyone = {r["id"]: r["owner"] for r in operator.classifications(limit=100, read_all=True).items}
    # THEN both callers' records are there, and either may be read by id
    assert everyone[mine["id"]] == ALICE_OWNER and everyone[theirs["id"]] == BOB.arn
    assert operator.request("GET", f"/all/classifications/{mine['id']}").json()["owner"] == ALICE_OWNER
    # AND its own listing holds none of theirs: read-all is a separate route, not a wider own listing
    assert not {mine["id"], theirs["id"]} & {r["id"] for r in operator.classifications(limit=100).items}
    # AND a caller with the invoke policy alone is refused by API Gateway before the function runs
    denied = len(api.denied)
    with pytest.raises(RequestFailed) as refused:
        alice.classifications(read_all=True)
    assert refused.value.status == 403
    assert api.denied[denied:] == [f"{ALICE.arn} GET /all/classifications"]
