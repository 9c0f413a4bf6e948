"""The ACL file format and the authorizer of ``pubsub serve --acl``; the guard's refusals
encode at every advertised version; SCRAM and PLAIN sessions against RFC test vectors."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest

from pubsub.errors import InvalidArgumentError
from pubsub.kafka.wire.codec import SUPPORTED, ApiKey, RequestHeader, encode_response, request_class
from pubsub.serve.acl import Authorizer, parse_acl
from pubsub.serve.connection import Connection
from pubsub.serve.guard import Guard
from pubsub.serve.sasl import AuthenticationFailed, new_session
from pubsub.serve.users import credentials_for, scram_credential


def test_rules_allow_by_prefix_principal_and_operation() -> None:
    acl = parse_acl(
        """
        # a comment
        alice  topic  orders.  read        # implies describe
        "CN=etl,O=Acme Inc"  topic  *  create
        *      group  public-  read
        admin  cluster  *  all
        """
    )
    assert acl.authorize("alice", "read", "topic", "orders.eu")
    assert acl.authorize("alice", "describe", "topic", "orders.eu")
    assert not acl.authorize("alice", "write", "topic", "orders.eu")
    assert not acl.authorize("alice", "read", "topic", "order")
    assert not acl.authorize("alice", "read", "group", "orders.eu")
    assert acl.authorize("CN=etl,O=Acme Inc", "create", "topic", "anything")
    assert not acl.authorize("CN=etl,O=Acme Inc", "describe", "topic", "anything")  # create only
    assert acl.authorize("bob", "read", "group", "public-x")
    assert acl.authorize("admin", "alter", "cluster", "kafka-cluster")
    assert Authorizer().authorize("anyone", "delete", "topic", "x")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("alice topic orders.", "line 1: 3 fields"),
        ("\nalice queue orders. read", "line 2: resource 'queue'"),
        ("alice topic * fly", "unknown operation 'fly'"),
        ('alice topic "orders read', "line 1: No closing quotation"),
    ],
)
def test_a_bad_rule_names_its_line(text: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        parse_acl(text, "acl.txt")
    assert message in raised.value.message
    assert raised.value.hint and "PRINCIPAL" in raised.value.hint


def _requests() -> dict[int, Any]:
    """A request per gated API naming the group 'g' and the topic 't'."""
    rc = request_class
    fetch = rc(ApiKey.FETCH)
    offsets = rc(ApiKey.LIST_OFFSETS)
    commit = rc(ApiKey.OFFSET_COMMIT)
    fetched = rc(ApiKey.OFFSET_FETCH)
    produce = rc(ApiKey.PRODUCE)
    created = rc(ApiKey.CREATE_TOPICS)
    trimmed = rc(ApiKey.DELETE_RECORDS)
    grown = rc(ApiKey.CREATE_PARTITIONS)
    described = rc(ApiKey.DESCRIBE_CONFIGS)
    altered = rc(ApiKey.ALTER_CONFIGS)
    incremental = rc(ApiKey.INCREMENTAL_ALTER_CONFIGS)
    return {
        ApiKey.PRODUCE: lambda: produce(
            acks=1,
            timeout_ms=1000,
            topic_data=[
                produce.TopicProduceData(
                    name="t",
                    partition_data=[produce.TopicProduceData.PartitionProduceData(index=0)],
                )
            ],
        ),
        ApiKey.FETCH: lambda: fetch(
            topics=[
                fetch.FetchTopic(
                    topic="t", partitions=[fetch.FetchTopic.FetchPartition(partition=0)]
                )
            ]
        ),
        ApiKey.LIST_OFFSETS: lambda: offsets(
            topics=[
                offsets.ListOffsetsTopic(
                    name="t",
                    partitions=[offsets.ListOffsetsTopic.ListOffsetsPartition(partition_index=0)],
                )
            ]
        ),
        ApiKey.METADATA: lambda: rc(ApiKey.METADATA)(
            topics=[rc(ApiKey.METADATA).MetadataRequestTopic(name="t")]
        ),
        ApiKey.OFFSET_COMMIT: lambda: commit(
            group_id="g",
            topics=[
                commit.OffsetCommitRequestTopic(
                    name="t",
                    partitions=[
                        commit.OffsetCommitRequestTopic.OffsetCommitRequestPartition(
                            partition_index=0
                        )
                    ],
                )
            ],
        ),
        ApiKey.OFFSET_FETCH: lambda: fetched(
            group_id="g",
            topics=[fetched.OffsetFetchRequestTopic(name="t", partition_indexes=[0])],
            groups=[fetched.OffsetFetchRequestGroup(group_id="g", topics=None)],
        ),
        ApiKey.FIND_COORDINATOR: lambda: rc(ApiKey.FIND_COORDINATOR)(
            key="g", key_type=0, coordinator_keys=["g"]
        ),
        ApiKey.JOIN_GROUP: lambda: rc(ApiKey.JOIN_GROUP)(group_id="g"),
        ApiKey.HEARTBEAT: lambda: rc(ApiKey.HEARTBEAT)(group_id="g"),
        ApiKey.LEAVE_GROUP: lambda: rc(ApiKey.LEAVE_GROUP)(group_id="g"),
        ApiKey.SYNC_GROUP: lambda: rc(ApiKey.SYNC_GROUP)(group_id="g"),
        ApiKey.DESCRIBE_GROUPS: lambda: rc(ApiKey.DESCRIBE_GROUPS)(groups=["g"]),
        ApiKey.DELETE_GROUPS: lambda: rc(ApiKey.DELETE_GROUPS)(groups_names=["g"]),
        ApiKey.CREATE_TOPICS: lambda: created(
            topics=[
                created.CreatableTopic(
                    name="t", num_partitions=1, replication_factor=1, assignments=[], configs=[]
                )
            ],
            timeout_ms=1000,
            validate_only=False,
        ),
        ApiKey.DELETE_TOPICS: lambda: rc(ApiKey.DELETE_TOPICS)(topic_names=["t"]),
        ApiKey.DELETE_RECORDS: lambda: trimmed(
            topics=[
                trimmed.DeleteRecordsTopic(
                    name="t",
                    partitions=[
                        trimmed.DeleteRecordsTopic.DeleteRecordsPartition(
                            partition_index=0, offset=1
                        )
                    ],
                )
            ],
            timeout_ms=1000,
        ),
        ApiKey.CREATE_PARTITIONS: lambda: grown(
            topics=[grown.CreatePartitionsTopic(name="t", count=2, assignments=None)],
            timeout_ms=1000,
            validate_only=False,
        ),
        ApiKey.DESCRIBE_CONFIGS: lambda: described(
            resources=[
                described.DescribeConfigsResource(
                    resource_type=2, resource_name="t", configuration_keys=None
                ),
                described.DescribeConfigsResource(
                    resource_type=4, resource_name="1", configuration_keys=None
                ),
            ]
        ),
        ApiKey.ALTER_CONFIGS: lambda: altered(
            resources=[
                altered.AlterConfigsResource(resource_type=2, resource_name="t", configs=[])
            ],
            validate_only=False,
        ),
        ApiKey.INCREMENTAL_ALTER_CONFIGS: lambda: incremental(
            resources=[
                incremental.AlterConfigsResource(resource_type=2, resource_name="t", configs=[])
            ],
            validate_only=False,
        ),
        ApiKey.SHARE_GROUP_HEARTBEAT: lambda: {
            "group_id": "g",
            "member_id": "m",
            "member_epoch": 0,
            "subscribed_topic_names": ["t"],
        },
        ApiKey.SHARE_GROUP_DESCRIBE: lambda: {"group_ids": ["g"]},
        ApiKey.SHARE_FETCH: lambda: {"group_id": "g", "member_id": "m", "topics": []},
        ApiKey.SHARE_ACKNOWLEDGE: lambda: {"group_id": "g", "member_id": "m", "topics": []},
    }


def test_every_refusal_the_guard_answers_itself_encodes_at_every_version() -> None:
    logged: list[str] = []
    guard = Guard(parse_acl(""), logged.append)  # no rule: everything denied
    answered = 0
    for key, make in _requests().items():
        low, high = SUPPORTED[key]
        for version in range(low, high + 1):
            conn = Connection("127.0.0.1", principal="eve")
            header = RequestHeader(key, version, 1, None)
            request, response, _after = guard.check(header, make(), conn)
            if response is not None:
                encode_response(header, response)
                answered += 1
            elif key not in (ApiKey.METADATA, ApiKey.LIST_OFFSETS):
                raise AssertionError((ApiKey(key).name, version, request))
    assert answered > 80
    assert all(line.startswith("denied 'eve' from 127.0.0.1 ") for line in logged)


def test_an_api_without_a_gate_needs_alter_on_the_cluster() -> None:
    guard = Guard(parse_acl("root cluster * alter"), lambda line: None)
    header = RequestHeader(29, 3, 1, None)  # DescribeAcls: not served, so without a gate
    assert guard.check(header, object(), Connection("h", principal="root"))[0] is not None
    with pytest.raises(PermissionError):
        guard.check(header, object(), Connection("h", principal="eve"))


# -- SASL sessions -----------------------------------------------------------------------------


def _scram_client(user: str, password: str, mechanism: str, session: Any) -> bytes:
    """A minimal RFC 5802 client run against ``session``; the server-final message."""
    name = "sha256" if mechanism.endswith("256") else "sha512"
    first_bare = f"n={user},r=clientnonce"
    server_first = session.step(f"n,,{first_bare}".encode()).decode()
    fields = dict(item.split("=", 1) for item in server_first.split(","))
    salted = hashlib.pbkdf2_hmac(
        name, password.encode(), base64.b64decode(fields["s"]), int(fields["i"])
    )
    client_key = hmac.digest(salted, b"Client Key", name)
    without_proof = f"c=biws,r={fields['r']}"
    auth = f"{first_bare},{server_first},{without_proof}".encode()
    signature = hmac.digest(hashlib.new(name, client_key).digest(), auth, name)
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature, strict=True)))
    return bytes(session.step(f"{without_proof},p={proof.decode()}".encode()))


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_accepts_the_password_and_nothing_else(mechanism: str) -> None:
    users = {"alice": credentials_for("pencil", [mechanism])}
    session = new_session(mechanism, users, b"secret")
    final = _scram_client("alice", "pencil", mechanism, session)
    assert final.startswith(b"v=") and session is not None and session.user == "alice"
    for user, password, reason in (
        ("alice", "pen", "wrong password"),
        ("eve", "x", "unknown user"),
    ):
        with pytest.raises(AuthenticationFailed) as raised:
            _scram_client(user, password, mechanism, new_session(mechanism, users, b"secret"))
        assert raised.value.reason == reason
        assert raised.value.message.startswith("Authentication failed during authentication")


def test_scram_stored_key_matches_rfc_7677_vector() -> None:
    # RFC 7677 section 3: user "user", password "pencil", salt and 4096 iterations.
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    credential = scram_credential("pencil", "SCRAM-SHA-256", salt=salt)
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", salt, 4096)
    assert credential.server_key == hmac.digest(salted, b"Server Key", "sha256")
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    assert credential.stored_key == hashlib.sha256(client_key).digest()


def test_plain_checks_the_hash() -> None:
    users = {"alice": credentials_for("pw", ["PLAIN"])}
    ok = new_session("PLAIN", users, b"s")
    assert ok is not None and ok.step(b"\0alice\0pw") == b"" and ok.user == "alice"
    for token, reason in ((b"\0alice\0nope", "wrong password"), (b"\0eve\0pw", "unknown user")):
        session = new_session("PLAIN", users, b"s")
        assert session is not None
        with pytest.raises(AuthenticationFailed) as raised:
            session.step(token)
        assert raised.value.reason == reason
    assert new_session("GSSAPI", users, b"s") is None


def test_partly_denied_requests_put_the_refusals_back_into_the_answer() -> None:
    """A request naming an allowed and a denied topic or group: the handler sees only the
    allowed one, and its answer (here an empty one) gets the refusal added, encodable."""
    from pubsub.kafka.wire.codec import response_class

    guard = Guard(parse_acl("eve topic ok all\neve group ok all"), lambda line: None)
    two = {
        ApiKey.PRODUCE: ("topic_data", "name"),
        ApiKey.FETCH: ("topics", "topic"),
        ApiKey.LIST_OFFSETS: ("topics", "name"),
        ApiKey.METADATA: ("topics", "name"),
        ApiKey.OFFSET_COMMIT: ("topics", "name"),
        ApiKey.DESCRIBE_GROUPS: ("groups", None),
        ApiKey.DELETE_GROUPS: ("groups_names", None),
    }
    requests = _requests()
    for key, (field, name_field) in two.items():
        low, high = SUPPORTED[key]
        for version in range(max(low, 3 if key == ApiKey.PRODUCE else low), high + 1):
            request = requests[key]()
            if key == ApiKey.OFFSET_COMMIT:
                request.group_id = "ok"
            entries = getattr(request, field)
            if name_field is None:
                setattr(request, field, ["ok", *entries])
            else:
                allowed = requests[key]()
                first = getattr(allowed, field)[0]
                setattr(first, name_field, "ok")
                setattr(request, field, [first, *entries])
            header = RequestHeader(key, version, 1, None)
            passed, answer, after = guard.check(header, request, Connection("h", principal="eve"))
            assert answer is None and after is not None, (ApiKey(key).name, version)
            kept = getattr(passed, field)
            assert [e if name_field is None else getattr(e, name_field) for e in kept] == ["ok"]
            response = after(response_class(key)())
            encode_response(header, response)
