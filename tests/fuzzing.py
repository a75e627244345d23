"""Hostile inputs for the fuzz tests: a corpus of the shapes upstream systems get wrong, and
hypothesis strategies for Segment-like messages with every field of any type."""

from __future__ import annotations

import json

from hypothesis import strategies as st

VALID_TYPES = ("track", "identify", "page", "screen")


def _nested(depth: int, open_: bytes = b"[", close: bytes = b"]") -> bytes:
    return open_ * depth + close * depth


def corpus() -> list[tuple[str, bytes | None]]:
    """(what it is, value): each is malformed or odd; the key is chosen by the caller."""
    ev = b'{"type":"track","messageId":"%s","userId":"fz","event":"E"%s}'
    out: list[tuple[str, bytes | None]] = [
        ("random bytes", bytes(range(256)) * 3),
        ("empty", b""),
        ("whitespace", b"   \n\t"),
        ("truncated json", (ev % (b"t1", b""))[:-7]),
        ("truncated string", b'{"type":"track","messageId":"t2","userId":"fz","event":"E'),
        ("tombstone", None),
        ("json null", b"null"),
        ("json array", b'[{"type":"track"}]'),
        ("json number", b"1e309"),
        ("nan", ev % (b"n1", b',"properties":{"x":NaN}')),
        ("infinity", ev % (b"n2", b',"properties":{"x":Infinity}')),
        ("nested 100k arrays", _nested(100_000)),
        ("nested 100k objects", b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
        ("nested 70 in properties", ev % (b"d1", b',"properties":' + _nested(70))),
        ("bad utf-8", b'{"type":"track","messageId":"u1","userId":"\xff\xfe","event":"E"}'),
        ("lone surrogate", b'{"type":"track","messageId":"u2","userId":"\\ud800","event":"E"}'),
        ("lone surrogate in properties", b'{"type":"track","messageId":"u5","userId":"fz2",'
                                         b'"event":"E","properties":{"s":"\\udfff x"}}'),
        ("overlong utf-8", b'{"type":"track","messageId":"u3","userId":"\xc0\xaf","event":"E"}'),
        ("nul byte", b'{"type":"track","messageId":"u4","userId":"a\x00b","event":"E"}'),
        ("type number", b'{"type":7,"messageId":"w1","userId":"fz","event":"E"}'),
        ("type unknown", b'{"type":"teleport","messageId":"w2","userId":"fz"}'),
        ("messageId object", b'{"type":"track","messageId":{},"userId":"fz","event":"E"}'),
        ("userId list", b'{"type":"track","messageId":"w3","userId":["fz"],"event":"E"}'),
        ("userId bool", b'{"type":"track","messageId":"w4","userId":true,"event":"E"}'),
        ("event number", b'{"type":"track","messageId":"w5","userId":"fz","event":5}'),
        ("properties string", ev % (b"w6", b',"properties":"x"')),
        ("traits list", b'{"type":"identify","messageId":"w7","userId":"fz","traits":[1]}'),
        ("context string", ev % (b"w8", b',"context":"x"')),
        ("timezone bogus", ev % (b"w9", b',"context":{"timezone":"Mars/Olympus"}')),
        ("no ids", b'{"type":"track","messageId":"x1","event":"E"}'),
        ("empty ids", b'{"type":"track","messageId":"x2","userId":"","event":"E"}'),
        ("no messageId", b'{"type":"track","userId":"fz","event":"E"}'),
        ("year 1", ev % (b"y1", b',"timestamp":"0001-01-01T00:00:00Z"')),
        ("year 9999", ev % (b"y2", b',"timestamp":"9999-12-31T23:59:59Z"')),
        ("year 10000", ev % (b"y3", b',"timestamp":"10000-01-01T00:00:00Z"')),
        ("timestamp number", ev % (b"y4", b',"timestamp":1767225600')),
        ("timestamp garbage", ev % (b"y5", b',"timestamp":"yesterday"')),
        ("timestamp month 13", ev % (b"y6", b',"timestamp":"2026-13-01T00:00:00Z"')),
        ("far future", ev % (b"y7", b',"timestamp":"2999-01-01T00:00:00Z"')),
        ("consent bad channel", b'{"type":"track","messageId":"c1","userId":"fz","event":'
                                b'"Consent Updated","properties":{"channel":"pigeon",'
                                b'"status":"opted_out"}}'),
        ("consent status list", b'{"type":"track","messageId":"c2","userId":"fz","event":'
                                b'"Consent Updated","properties":{"channel":"email",'
                                b'"status":["opted_out"]}}'),
        ("oversize 65 KB", ev % (b"s1", b',"properties":{"b":"' + b"x" * 66_000 + b'"}')),
        ("oversize 1 MB", ev % (b"s2", b',"properties":{"b":"' + b"x" * 1_000_000 + b'"}')),
        ("oversize 3 MB", ev % (b"s3", b',"properties":{"b":"' + b"x" * 3_000_000 + b'"}')),
        ("huge int", ev % (b"h1", b',"properties":{"n":' + b"9" * 5000 + b"}")),
    ]
    return out


# Valid odd events: applied, never dead-lettered (the exact counts check them).
def odd_valid(i: int, customer: str) -> dict:
    odd = [
        {"properties": {"sql": "'; DROP TABLE users; --", "html": "<script>alert(1)</script>"}},
        {"properties": {"a": None, "b": [], "c": {}, "d": -0.0, "e": 1e308}},
        {"event": "Éé 🎉 \u202e rtl", "properties": {"\u0000key": "nul in key"}},
        {"traits": {"email": f"  MIXED.{customer}@Case.Example ", "name": "x" * 1000}},
        {"event": "Consent Updated", "properties": {"channel": "email", "status": "opted_in",
                                                    "extra": [1, 2]}},
        {"event": "Email Opened", "properties": {"dispatch_id": 12345}},
        {"event": "Order Completed", "properties": {"revenue": "12.5"}},
        {"properties": {"path": "../../etc/passwd", "url": "javascript:alert(1)"}},
    ][i % 8]
    ev = {"type": "track", "messageId": f"ok-{customer}-{i}", "userId": customer,
          "event": "Signed In", "timestamp": "2026-01-01T10:00:00Z"}
    ev.update(odd)
    if "traits" in odd:
        ev["type"] = "identify"
        ev.pop("event")
    return ev


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda c: st.one_of(
    st.lists(c, max_size=4), st.dictionaries(st.text(max_size=8), c, max_size=4)),
    max_leaves=12)
field_values = st.one_of(json_values, st.sampled_from(
    ["track", "identify", "page", "screen", "alias", "group", "2026-01-01T10:00:00Z",
     "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.9999999Z", "Consent Updated",
     "Erasure Requested", "Email Bounced", "", "u1", "\ud800", "a\udfffb", "\ud83d\ude00"]))
segment_like = st.fixed_dictionaries({}, optional={
    k: field_values for k in ("type", "messageId", "userId", "anonymousId", "event", "name",
                              "properties", "traits", "context", "timestamp", "receivedAt",
                              "originalTimestamp", "sentAt")})


@st.composite
def messages(draw: st.DrawFn) -> bytes | None:
    """Bytes a producer might send: Segment-like JSON (any field of any type), mangled JSON,
    or raw bytes."""
    kind = draw(st.integers(0, 9))
    if kind >= 7:  # a valid event with one byte changed or inserted: near misses
        body = json.dumps(odd_valid(draw(st.integers(0, 7)), "fz")).encode()
        i = draw(st.integers(0, len(body) - 1))
        b = bytes([draw(st.integers(0, 255))])
        return body[:i] + b + body[i + (kind == 7):]
    if kind == 0:
        return draw(st.binary(max_size=200))
    if kind == 1:
        return None
    # The standard library's encoder: big integers, and lone surrogates either escaped or
    # written raw (invalid UTF-8), as sloppy producers do.
    ascii_ = draw(st.booleans())
    body = json.dumps(draw(segment_like), ensure_ascii=ascii_).encode("utf-8", "surrogatepass")
    if kind == 2:
        cut = draw(st.integers(0, len(body)))
        return body[:cut]
    if kind == 3:
        i = draw(st.integers(0, len(body)))
        return body[:i] + draw(st.binary(min_size=1, max_size=4)) + body[i:]
    return body
