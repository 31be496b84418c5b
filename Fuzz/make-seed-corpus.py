#!/usr/bin/env python3
"""Writes the minimized seed corpus in Fuzz/Corpus/<Target>/ (committed; run again only to change it).

The seeds are the protocol's golden vectors (../shared/protocol/golden_vectors.py's encoding, copied in
here so the corpus does not depend on that folder), handshake and control payloads shaped as the official
peers send them (docs/PROTOCOL.md), WebSocket frames both ways, HTTP requests shaped as the AWS CLI and
the plugin send them, and policies using the condition keys and wildcards docs/ACCESS.md describes. The first byte of every binary seed is the cut size the
harnesses read (FuzzInput.pieces): 0 means whole.
"""
import hashlib, json, os, struct, uuid

HERE = os.path.dirname(os.path.abspath(__file__))
T = 1700000000000


def go_json(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def uuid_to_wire(u):
    b = u.bytes
    return b[8:] + b[:8]


def ssm(message_type, seq, flags, mid, payload_type, payload, created=T):
    header = struct.pack(">I", 116) + message_type.encode().ljust(32, b" ") + struct.pack(">I", 1)
    header += struct.pack(">QqQ", created, seq, flags) + uuid_to_wire(mid) + hashlib.sha256(payload).digest()
    header += struct.pack(">I", payload_type)
    return header + struct.pack(">I", len(payload)) + payload


def smux(cmd, sid, data=b"", version=1):
    return struct.pack("<BBHI", version, cmd, len(data), sid) + data


def ws(opcode, payload, mask=None, fin=True):
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = bytes([first, mbit | n])
    elif n < 65536:
        head = bytes([first, mbit | 126]) + struct.pack(">H", n)
    else:
        head = bytes([first, mbit | 127]) + struct.pack(">Q", n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


ack = go_json({"AcknowledgedMessageType": "output_stream_data",
               "AcknowledgedMessageId": "dd01e56b-ff48-483e-a508-b5f073f31b16",
               "AcknowledgedMessageSequenceNumber": 0, "IsSequentialMessage": True})
request = go_json({"AgentVersion": "3.3.1142.0", "RequestedClientActions": [
    {"ActionType": "SessionType", "ActionParameters": {"SessionType": "Port", "Properties": {
        "portNumber": "5432", "type": "LocalPortForwarding", "jumpgateExtensions": "large-payloads,digest-free"}}}]})
response = go_json({"ClientVersion": "1.2.707.0", "ProcessedClientActions": [
    {"ActionType": "SessionType", "ActionStatus": 1, "ActionResult": {"JumpgateExtensions": "large-payloads"},
     "Error": ""}], "Errors": []})
complete = go_json({"HandshakeTimeToComplete": 52000000, "CustomerMessage": ""})
closed = go_json({"MessageId": "8c3b1e1a-9e1b-4e55-9c1f-0f2d7c1e5a10", "CreatedDate": "2026-12-03T06:00:00.000Z",
                  "DestinationId": "alice-0123", "SessionId": "alice-0123", "MessageType": "channel_closed",
                  "SchemaVersion": 1, "Output": "the agent went away"})
session_state = go_json({"SessionState": "Connected", "SessionId": "alice-0123"})
open_input = go_json({"MessageSchemaVersion": "1.0", "RequestId": "5f0a3e4c-1b2d-4e5f-8a9b-0c1d2e3f4a5b",
                      "TokenValue": "token", "ClientId": "c1", "ClientVersion": "1.2.707.0"})
agent_task = go_json({"Content": json.dumps({"SessionId": "alice-0123", "DataChannelUrl": "wss://x/v1/data-channel/alice-0123"}),
                      "TaskId": "alice-0123", "Topic": "start_session"})

seeds = {
    "FuzzSSMMessage": {
        "ack": b"\0" + ssm("acknowledge", 0, 3, uuid.UUID("a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"), 0, ack),
        "data-hello": b"\0" + ssm("input_stream_data", 1, 0, uuid.UUID("01234567-89ab-4cde-8f01-23456789abcd"), 1, b"hello"),
        "flag-terminate": b"\x07" + ssm("input_stream_data", 2, 0, uuid.UUID("fedcba98-7654-4321-8fed-cba987654321"), 10, struct.pack(">I", 2)),
        "handshake-complete": b"\0" + ssm("output_stream_data", 0, 1, uuid.UUID("11111111-2222-4333-8444-555555555555"), 7, complete),
        "handshake-request": b"\x20" + ssm("output_stream_data", 0, 1, uuid.UUID("21111111-2222-4333-8444-555555555555"), 5, request),
        "channel-closed": b"\0" + ssm("channel_closed", 0, 0, uuid.UUID("31111111-2222-4333-8444-555555555555"), 0, closed),
        "two-messages": b"\x33" + ssm("input_stream_data", 1, 0, uuid.UUID("41111111-2222-4333-8444-555555555555"), 1, b"a")
        + ssm("acknowledge", 0, 3, uuid.UUID("51111111-2222-4333-8444-555555555555"), 0, ack),
    },
    "FuzzPayloadJSON": {
        "ack": ack, "request": request, "response": response, "complete": complete, "closed": closed,
        "session-state": session_state, "open-data-channel": open_input, "agent-task": agent_task,
        "numbers": b'[0,-1,1.5e300,-0.0,9223372036854775807,"\\u00e9\\ud83d\\ude00",true,null,{}]',
    },
    "FuzzHandshake": {
        "honest": request + b"\0" + response + b"\0" + complete,
        "basic": go_json({"AgentVersion": "3.0.0.0", "RequestedClientActions": [{"ActionType": "SessionType",
                          "ActionParameters": {"SessionType": "Port", "Properties": {"portNumber": "22"}}}]})
        + b"\0" + go_json({"ClientVersion": "1.1.0.0", "ProcessedClientActions": [{"ActionType": "SessionType",
                          "ActionStatus": 1}]}) + b"\0" + complete,
    },
    "FuzzSmux": {
        "v1-open-data-close": b"\0" + smux(0, 3) + smux(2, 3, b"hello") + smux(1, 3),
        "v1-nop": b"\x03" + smux(3, 0),
        "v2-update": b"\0" + smux(0, 3, version=2) + smux(4, 3, struct.pack("<II", 5, 262144), version=2)
        + smux(2, 3, b"x" * 40, version=2),
        "server-opens-even": b"\x05" + smux(0, 2) + smux(2, 2, b"yo") + smux(1, 2),
    },
    "FuzzWebSocket": {
        "masked-binary": b"\0" + ws(2, b"\x00\x00\x00\x74hello", mask=b"\x01\x02\x03\x04"),
        "ping-close": b"\x03" + ws(9, b"p", mask=b"\x0a\x0b\x0c\x0d") + ws(8, struct.pack(">H", 1000) + b"bye", mask=b"\1\1\1\1"),
        "unmasked-text": b"\0" + ws(1, b'{"MessageSchemaVersion":"1.0"}'),
        "fragmented": b"\x04" + ws(2, b"abc", fin=False) + ws(0, b"def"),
        "medium": b"\0" + ws(2, b"m" * 300, mask=b"\5\6\7\x08"),
        "upgrade-response": b"\0HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        "refused-response": b"\0HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nforbidden",
    },
    "FuzzHTTPSigV4": {
        "api-call": b"\0POST / HTTP/1.1\r\nHost: 127.0.0.1:8443\r\nContent-Type: application/x-amz-json-1.1\r\n"
        b"X-Amz-Target: AmazonSSM.StartSession\r\nContent-Length: 27\r\n\r\n{\"Target\":\"mi-0123456789ab\"}",
        "signed-shape": b"\x11POST / HTTP/1.1\r\nHost: localhost\r\nX-Amz-Date: 20251203T064000Z\r\n"
        b"Authorization: AWS4-HMAC-SHA256 Credential=AKJGFUZZFUZZFUZZFUZZ/20251203/us-east-1/ssm/aws4_request, "
        b"SignedHeaders=host;x-amz-date, Signature=0000000000000000000000000000000000000000000000000000000000000000\r\n"
        b"Content-Length: 2\r\n\r\n{}",
        "presigned-upgrade": b"\0GET /v1/data-channel/alice-0123?role=publish_subscribe&X-Amz-Algorithm=AWS4-HMAC-SHA256"
        b"&X-Amz-Credential=AKJGFUZZFUZZFUZZFUZZ%2F20251203%2Fus-east-1%2Fssm%2Faws4_request&X-Amz-Date=20251203T064000Z"
        b"&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature=00 HTTP/1.1\r\nHost: localhost\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n",
        "pipelined": b"\x09GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /metrics HTTP/1.1\r\nHost: a\r\n\r\n",
        "chunked": b"\0POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    },
    "FuzzPolicy": {
        "start-session-tagged": go_json({"Version": "2012-10-17", "Statement": [
            {"Sid": "Db", "Effect": "Allow", "Action": ["ssm:StartSession"],
             "Resource": ["arn:aws:ssm:*:*:managed-instance/*", "arn:aws:ssm:*:*:document/AWS-StartPortForwardingSession*"],
             "Condition": {"StringEquals": {"ssm:resourceTag/env": "prod"}, "IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}},
            {"Effect": "Allow", "Action": "ssm:TerminateSession",
             "Resource": "arn:aws:ssm:*:*:session/${aws:username}-*"}]}),
        "deny-not-action": go_json({"Version": "2012-10-17", "Statement": [
            {"Effect": "Deny", "NotAction": "ssm:Describe*", "NotResource": "arn:aws:ssm:*:*:session/*",
             "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2026-01-01T00:00:00Z"},
                           "Bool": {"aws:SecureTransport": "false"}, "StringLike": {"aws:username": ["a*", "b?"]}}}]}),
        "old-version": go_json({"Version": "2008-10-17", "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}),
    },
}

for target, files in seeds.items():
    folder = os.path.join(HERE, "Corpus", target)
    os.makedirs(folder, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
print("wrote", sum(len(f) for f in seeds.values()), "seeds")
