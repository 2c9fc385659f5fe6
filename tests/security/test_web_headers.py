"""Issue 14: security headers on every response of the review app (pages, redirects, errors, report, clip)."""

from __future__ import annotations

from tests.test_web import _client, clinic, csrf_token  # noqa: F401

FIXED = {"x-frame-options": "DENY", "x-content-type-options": "nosniff", "referrer-policy": "same-origin",
         "cache-control": "no-store"}


def csp(response) -> dict[str, list[str]]:
    """The Content-Security-Policy header as {directive: [sources]}."""
    value = response.headers.get("content-security-policy", "")
    out = {}
    for part in filter(None, (p.strip() for p in value.split(";"))):
        name, *sources = part.split()
        out[name] = sources
    return out


def assert_protected(response) -> None:
    where = f"{response.request.method} {response.request.url.path} ({response.status_code})"
    for name, value in FIXED.items():
        assert response.headers.get(name) == value, f"{where}: {name} is {response.headers.get(name)!r}"
    policy = csp(response)
    assert policy.get("default-src") == ["'none'"], where
    assert policy.get("frame-ancestors") == ["'none'"] and policy.get("base-uri") == ["'none'"], where
    assert policy.get("form-action") == ["'self'"], where
    assert not any("script" in d for d in policy), f"{where}: the policy allows script"
    assert set(policy.get("style-src", [])) == {"'unsafe-inline'"}, where  # the pages' own <style> and style=""
    assert set(policy.get("media-src", [])) == {"'self'", "data:"}, where  # clip.wav, and clips embedded in reports
    assert set(policy) <= {"default-src", "style-src", "media-src", "form-action", "frame-ancestors",
                           "base-uri"}, where


def test_every_response_carries_the_security_headers(clinic):  # noqa: F811
    settings, store = clinic
    anonymous = _client(settings)
    flag = store.flags("s-1")[0]["id"]
    responses = [anonymous.get("/login"), anonymous.get("/", follow_redirects=False),
                 anonymous.post("/login", data={"therapist": "t-anna", "password": "x"}, follow_redirects=False)]
    c = _client(settings, "t-anna")
    responses += [c.get("/"), c.get("/sessions/s-1"), c.get("/sessions/s-1/report"), c.get("/clients/c-1/trend"),
                  c.get(f"/sessions/s-1/flags/{flag}/clip.wav"),
                  c.get("/sessions/s-2"),  # another therapist's client: 404, as an unknown id
                  c.get("/sessions/s-9"), c.get("/no/such/page"),  # 404
                  c.post(f"/sessions/s-1/flags/{flag}/review", data={"verdict": "rupture"},
                         headers={"Origin": "http://127.0.0.1:9999"})]  # refused: 403
    token = csrf_token(c.get("/sessions/s-1").text)
    responses.append(c.post(f"/sessions/s-1/flags/{flag}/review", data={"verdict": "rupture", "csrf": token or ""},
                            follow_redirects=False))  # saved: 303
    assert sorted({r.status_code for r in responses}) == [200, 303, 403, 404]
    assert any(r.headers.get("content-type") == "audio/wav" for r in responses)
    for r in responses:
        assert_protected(r)


def test_the_report_and_the_clip_may_not_be_embedded_by_another_site(clinic):  # noqa: F811
    """Same-site pages (another port) get the cookie; the browser must not hand them the report or the clip."""
    settings, store = clinic
    c = _client(settings, "t-anna")
    flag = store.flags("s-1")[0]["id"]
    for path in ("/sessions/s-1/report", f"/sessions/s-1/flags/{flag}/clip.wav"):
        assert c.get(path).headers.get("cross-origin-resource-policy") == "same-origin"
        # an <audio> or <iframe> on another port asks with these fetch-metadata headers: refused before any work
        embedded = c.get(path, headers={"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "no-cors",
                                        "Sec-Fetch-Dest": "audio"})
        assert embedded.status_code == 403, path
        framed = c.get(path, headers={"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "navigate",
                                      "Sec-Fetch-Dest": "iframe"})
        assert framed.status_code == 403, path
    events = [a["event"] for a in store.audit_rows()]
    assert "report viewed" in events and events.count("clip played") == 1  # only the same-origin requests
    assert events.count("request refused") == 4
    # the user's own navigation (a bookmark, a typed address) still works
    assert c.get("/sessions/s-1/report", headers={"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate",
                                                  "Sec-Fetch-Dest": "document"}).status_code == 200
