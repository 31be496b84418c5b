#!/usr/bin/env python3
"""Send botocore-signed bad requests to a running gateway and print how each was answered, as JSON.

    api_rejections.py URL CA_FILE ACCESS_KEY_ID SECRET

Each case is signed by botocore's own SigV4Auth (the code the AWS CLI runs) and sent with botocore's
HTTP session; a valid DescribeSessions follows each one on the same connection pool, so the test can
check that a rejected request disturbs nothing else. Used by Tests/JumpgateIntegrationTests.
"""
import datetime
import json
import sys

import botocore.auth
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.httpsession import URLLib3Session

url, ca_file, key, secret = sys.argv[1:5]
session = URLLib3Session(verify=ca_file)
real_now = botocore.auth.get_current_datetime


def send(operation, body, credentials, clock_offset=0):
    botocore.auth.get_current_datetime = lambda: real_now() + datetime.timedelta(seconds=clock_offset)
    request = AWSRequest(
        method="POST",
        url=url + "/",
        data=body,
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"AmazonSSM.{operation}"},
    )
    SigV4Auth(credentials, "ssm", "us-east-1").add_auth(request)
    botocore.auth.get_current_datetime = real_now
    response = session.send(request.prepare())
    try:
        parsed = json.loads(response.content or b"{}")
    except ValueError:
        parsed = {"raw": response.content[:200].decode("utf-8", "replace")}
    return {
        "status": response.status_code,
        "type": str(parsed.get("__type", "")).split("#")[-1],
        "message": parsed.get("message", parsed.get("Message", "")),
    }


good = Credentials(key, secret)
valid = json.dumps({"State": "Active"}).encode()
cases = {
    "wrong_key": ("DescribeSessions", valid, Credentials("AKJGNOSUCHKEY0000000", secret), 0),
    "bad_signature": ("DescribeSessions", valid, Credentials(key, secret + "x"), 0),
    "stale_date": ("DescribeSessions", valid, good, -600),
    "future_date": ("DescribeSessions", valid, good, 600),
    "malformed_json": ("DescribeSessions", b'{"State": "Active"', good, 0),
    "not_an_object": ("DescribeSessions", b"[1, 2, 3]", good, 0),
    "unknown_operation": ("NoSuchOperation", b"{}", good, 0),
    "oversized_body": ("DescribeSessions", b'{"State": "' + b"A" * (2 << 20) + b'"}', good, 0),
    "bad_parameter": ("StartSession", json.dumps({"Target": "mi-0123", "DocumentName": "AWS-RunShellScript"}).encode(), good, 0),
}
results = {}
for name, (operation, body, credentials, offset) in cases.items():
    results[name] = send(operation, body, credentials, offset)
    results[name + "/then_valid"] = send("DescribeSessions", valid, good)
print(json.dumps(results, indent=1))
