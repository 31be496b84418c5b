#!/usr/bin/env python3
"""Print SigV4-signed requests made by botocore itself, as JSON, for Jumpgate's SigV4 tests.

The SSM requests come from a real botocore SSM client (the same code the AWS CLI runs) whose HTTP send
is intercepted; the others from botocore's SigV4Auth / SigV4QueryAuth for the ssmmessages service.
The clock is frozen so the output is deterministic.
"""
import base64
import datetime
import json
import sys
from urllib.parse import urlsplit

import botocore.auth
import botocore.session
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.credentials import Credentials

EPOCH = 1700000000  # 2023-11-14T22:13:20Z
FROZEN = datetime.datetime.fromtimestamp(EPOCH, tz=datetime.timezone.utc)
botocore.auth.get_current_datetime = lambda: FROZEN

KEY, SECRET = "AKIAJUMPGATETEST0001", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYJUMPGATEKEY"
cases = []


def record(name, method, url, headers, body, service, region, token=None):
    parts = urlsplit(url)
    headers = dict(headers.items())
    if not any(k.lower() == "host" for k in headers):
        # urllib3 adds Host on the wire; botocore signed the value it derives from the URL.
        headers["Host"] = botocore.auth._host_from_url(url)
    cases.append({
        "name": name, "method": method, "path": parts.path or "/", "query": parts.query,
        "headers": [[k, v if isinstance(v, str) else v.decode()] for k, v in headers.items()],
        "body": base64.b64encode(body or b"").decode(), "service": service, "region": region,
        "accessKey": KEY, "secret": SECRET, "sessionToken": token, "epoch": EPOCH,
    })


def ssm_client_case(name, operation, params, region, token=None):
    session = botocore.session.get_session()
    client = session.create_client(
        "ssm", region_name=region, endpoint_url="https://127.0.0.1:8443",
        aws_access_key_id=KEY, aws_secret_access_key=SECRET, aws_session_token=token,
    )

    def capture(request, **kwargs):
        body = request.body if isinstance(request.body, (bytes, type(None))) else request.body.encode()
        record(name, request.method, request.url, request.headers, body, "ssm", region, token)
        response = AWSResponse(request.url, 200, {"Content-Type": "application/x-amz-json-1.1"}, None)
        response._content = b'{"SessionId":"s-0123456789abcdef0","TokenValue":"t","StreamUrl":"wss://x/"}'
        return response

    client.meta.events.register("before-send", capture)
    getattr(client, operation)(**params)


ssm_client_case("botocore StartSession", "start_session", {
    "Target": "mi-0123456789abcdef0",
    "DocumentName": "AWS-StartPortForwardingSessionToRemoteHost",
    "Parameters": {"host": ["db.vpc.internal"], "portNumber": ["3306"], "localPortNumber": ["1213"]},
    "Reason": "Olá mundo! <&>",
}, "us-east-1")
ssm_client_case("botocore TerminateSession with session token", "terminate_session",
                {"SessionId": "s-0123456789abcdef0"}, "eu-west-3", token="FwoGZXIvYXdzEJumpgateToken==")
ssm_client_case("botocore DescribeSessions", "describe_sessions", {"State": "Active"}, "sa-east-1")

for name, url in [
    ("SigV4Auth GET with query", "https://gw.example:8443/v1/control-channel/mi-0123456789abcdef0?role=subscribe&stream=input"),
    ("SigV4Auth GET with escapes", "https://gw.example/v1/data-channel/s-1?role=publish_subscribe&z=a%20b&a=%2F~"),
]:
    request = AWSRequest(method="GET", url=url, headers={"Host": urlsplit(url).netloc})
    SigV4Auth(Credentials(KEY, SECRET), "ssmmessages", "us-east-1").add_auth(request)
    record(name, "GET", request.url, request.headers, b"", "ssmmessages", "us-east-1")

request = AWSRequest(method="POST", url="https://gw.example/v1/data-channel/s-1",
                     data=b'{"MessageSchemaVersion":"1.0","RequestId":"r","ClientId":""}',
                     headers={"Content-Type": "application/json", "Host": "gw.example"})
SigV4Auth(Credentials(KEY, SECRET), "ssmmessages", "ap-southeast-2").add_auth(request)
record("SigV4Auth CreateDataChannel POST", "POST", request.url, request.headers, request.data, "ssmmessages", "ap-southeast-2")

request = AWSRequest(method="GET", url="https://gw.example:8443/v1/data-channel/s-1?role=publish_subscribe",
                     headers={"Host": "gw.example:8443"})
SigV4QueryAuth(Credentials(KEY, SECRET), "ssmmessages", "us-east-1", expires=60).add_auth(request)
record("SigV4QueryAuth presigned GET", "GET", request.url, {"Host": "gw.example:8443"}, b"", "ssmmessages", "us-east-1")

json.dump(cases, sys.stdout, indent=1)
