"""End-to-end suite through Nginx (run by .ci/nginx-e2e): HTTPS and WSS only, against
nginx/jjongal.conf in front of two app processes on one PostgreSQL. App A runs the story
worker, app B does not, so a subscriber on B sees a story another process wrote."""

import asyncio
import base64
import concurrent.futures
import hashlib
import json
import os
import ssl
import subprocess
import time
import urllib.parse

import requests
import websockets

BASE = os.environ["E2E_BASE"]
CA = os.environ["E2E_CA"]
SECRET = os.environ["E2E_MEDIA_SECRET"]
WSS = BASE.replace("https://", "wss://")
APP_B_PORT = os.environ["E2E_APP_B"].rsplit(":", 1)[1]
TLS = ssl.create_default_context(cafile=CA)
s = requests.Session()
s.verify = CA
s.trust_env = False  # a CA bundle from the environment would override `verify`
checks = []


def check(name, ok, detail=""):
    checks.append((name, ok))
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else f": {detail}"), flush=True)


def envelope_error(r, status, code):
    try:
        body = r.json()
    except ValueError:
        return False
    return r.status_code == status and body.get("success") is False and body["error"]["code"] == code


def post(path, body, token=None, **kw):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return s.post(BASE + path, data=json.dumps(body), headers=headers, **kw)


def get(path, token=None, **kw):
    headers = kw.pop("headers", {})
    if token:
        headers["authorization"] = f"Bearer {token}"
    return s.get(BASE + path, headers=headers, **kw)


def sign(uri, expires):
    digest = hashlib.md5(f"{expires}{uri} {SECRET}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def main():
    # Plain HTTP moves to HTTPS; health checks answer there too.
    r = s.get(os.environ["E2E_HTTP"] + "/api/v1/users/me", allow_redirects=False)
    check("HTTP redirects to HTTPS", r.status_code == 301 and r.headers["location"].startswith("https://"), r.status_code)
    r = s.get(os.environ["E2E_HTTP"] + "/healthz")
    check("health check answers on plain HTTP", r.status_code == 200, r.status_code)

    # Sign-up, token, the request id passed through, security headers.
    r = post("/api/v1/users", {"user_id": "nginx-e2e", "password": "password123", "name": "민준", "age": 7, "guardian_consent": True})
    check("sign-up through Nginx", r.status_code == 201, r.text)
    r = post("/api/v1/auth/token", {"user_id": "nginx-e2e", "password": "password123"})
    token = r.json()["data"]["access_token"]
    r = get("/api/v1/users/me", token, headers={"x-request-id": "e2e-request-1"})
    check("token works; X-Request-Id passes through", r.status_code == 200 and r.headers.get("x-request-id") == "e2e-request-1", r.headers)
    check("HSTS and nosniff on answers", "max-age" in r.headers.get("strict-transport-security", "") and r.headers.get("x-content-type-options") == "nosniff")
    r = get("/api/v1/users/me")
    check("no X-Request-Id sent: one is made", bool(r.headers.get("x-request-id")))

    # A GraphQL subscription over WSS on app B (which runs no worker) follows a story
    # that app A writes. Nginx balances sockets round robin: open two, so one is on B.
    async def watch(story_id):
        async with websockets.connect(WSS + "/graphql/ws", ssl=TLS, subprotocols=["graphql-transport-ws"]) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {
                "query": "subscription($id: ID!) { storyUpdated(id: $id) { status } }", "variables": {"id": story_id}}}))
            statuses = []
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 120))
                if msg["type"] == "next":
                    statuses.append(msg["payload"]["data"]["storyUpdated"]["status"])
                elif msg["type"] == "complete":
                    return statuses
                else:
                    raise AssertionError(msg)

    async def story_with_watchers():
        # Subscribe first to a story created while the workers are busy elsewhere: the
        # subscription starts with where it stands, then follows every change.
        r = post("/api/v1/stories", {"user_preferences": {"theme": "바다", "characters": ["고래"], "length": "short"}}, token)
        story = r.json()["data"]["id"]
        results = await asyncio.gather(watch(story), watch(story))
        return story, results

    story, results = asyncio.run(story_with_watchers())
    check("both subscriptions saw the story completed", all(r and r[-1] == "completed" for r in results), results)
    log = open(os.environ["E2E_ACCESS_LOG"]).read()
    ws_lines = [l for l in log.splitlines() if "/graphql/ws" in l]
    check("a subscription ran on app B, which writes no stories", any(f":{APP_B_PORT}" in l for l in ws_lines), ws_lines)

    # Media: served by Nginx (no app saw a /media request), with Range and types.
    story_json = get(f"/api/v1/stories/{story}", token).json()["data"]
    image = story_json["chapters"][0]["image"]["url"]
    check("media URLs are public HTTPS URLs", image.startswith(BASE + "/media/"), image)
    r = s.get(image)
    check("media served", r.status_code == 200 and r.headers["content-type"].startswith("image/"), (r.status_code, r.headers))
    r = s.get(image, headers={"range": "bytes=0-9"})
    check("Range answered with 206", r.status_code == 206 and len(r.content) == 10, r.status_code)
    app_logs = [open(p).read() for p in os.environ["E2E_APP_LOGS"].split(":")]
    # The apps log every request's path (so the absence below means something)...
    check("the apps log the requests they serve", all('"path":"/api/v1/' in log for log in app_logs))
    # ...and neither saw one for media.
    check("Nginx, not the app, served the media", not any("/media/" in log for log in app_logs))
    parts = urllib.parse.urlsplit(image)
    uri = urllib.parse.unquote(parts.path)
    r = s.get(f"{BASE}{parts.path}?md5=AAAAAAAAAAAAAAAAAAAAAA&expires=9999999999")
    check("bad signature: 403 envelope", envelope_error(r, 403, "INSUFFICIENT_PERMISSION"), r.text)
    past = int(time.time()) - 60
    r = s.get(f"{BASE}{parts.path}?md5={sign(uri, past)}&expires={past}")
    check("expired signature: 410 envelope", envelope_error(r, 410, "URL_EXPIRED"), r.text)
    future = int(time.time()) + 600
    r = s.get(f"{BASE}/media/nothing/here.svg?md5={sign('/media/nothing/here.svg', future)}&expires={future}")
    check("missing file: 404 envelope", envelope_error(r, 404, "RESOURCE_NOT_FOUND"), r.text)

    # A conversation over WSS.
    async def talk():
        async with websockets.connect(f"{WSS}/wss/v1/audio?token={token}&child_name=지우&age=6", ssl=TLS) as ws:
            await ws.send(json.dumps({"type": "start_conversation"}))
            started = json.loads(await asyncio.wait_for(ws.recv(), 60))
            await ws.send(json.dumps({"type": "user_message", "text": "공룡 이야기 해줘"}))
            while True:
                reply = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if reply["type"] == "ai_response":
                    break
            await ws.send(json.dumps({"type": "end_conversation"}))
            ended = json.loads(await asyncio.wait_for(ws.recv(), 60))
            return started, reply, ended
    started, reply, ended = asyncio.run(talk())
    check("conversation over WSS", started["type"] == "conversation_started" and reply["user_text"] == "공룡 이야기 해줘" and ended["type"] == "conversation_ended", (started, reply, ended))

    # 413 from Nginx in the envelope.
    r = s.post(BASE + "/api/v1/stories", data=b"x" * (1024 * 1024 + 10), headers={"content-type": "application/json", "authorization": f"Bearer {token}"})
    check("oversized body: 413 envelope", envelope_error(r, 413, "PAYLOAD_TOO_LARGE"), r.status_code)

    # limit_req: a burst beyond it is answered 429 in the envelope with Retry-After.
    def hit(_):
        return s.get(BASE + "/api/v1/users/me", headers={"authorization": f"Bearer {token}"})
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(hit, range(150)))
    limited = [r for r in replies if r.status_code == 429]
    check("limit_req answers 429 in the envelope", bool(limited) and all(envelope_error(r, 429, "RATE_LIMIT_EXCEEDED") and r.headers.get("retry-after") for r in limited), [r.status_code for r in replies][:20])
    time.sleep(3)

    # The access log has no query strings (tokens, signatures).
    log = open(os.environ["E2E_ACCESS_LOG"]).read()
    check("access log without query strings", "token=" not in log and "md5=" not in log and "?" not in log)

    # Every app stopped: 502 in the envelope.
    subprocess.run(os.environ["E2E_STOP_APPS"], shell=True, check=False)
    time.sleep(2)
    r = get("/api/v1/users/me", token)
    check("apps down: 502 envelope", envelope_error(r, 502, "SERVICE_UNAVAILABLE"), (r.status_code, r.text[:200]))

    failed = [n for n, ok in checks if not ok]
    print(f"{len(checks) - len(failed)} passed, {len(failed)} failed")
    raise SystemExit(1 if failed else 0)


main()
