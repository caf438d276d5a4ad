#!/usr/bin/env python3
"""Regenerates the seed corpora under test/fuzz/corpus/<target>/ (each seed one fuzz input).

peer_decoder_fuzz: a mode byte (bit 0: 0 = server decoder, 1 = client decoder; bits 1-7: Feed
  chunk size, 0 = all at once) followed by a byte stream built from proto_spec/vectors/.
http_conn_fuzz: a byte seeding the sizes of the pieces (0 = one write), then a client's bytes.
node_app_fuzz: lines of [method byte][flags byte][target] (see node_app_fuzz.cc).
url_fuzz: a request target.
Run from anywhere: python3 test/fuzz/make_corpus.py
"""
import os
import re

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
VEC = os.path.join(ROOT, "proto_spec", "vectors")
CORPUS = os.path.join(ROOT, "test", "fuzz", "corpus")


def vec(name):
    digits = ""
    with open(os.path.join(VEC, name + ".hex")) as f:
        for line in f:
            digits += re.sub(r"\s", "", line.split("#", 1)[0])
    return bytes.fromhex(digits)


def write(target, seeds):
    out = os.path.join(CORPUS, target)
    os.makedirs(out, exist_ok=True)
    for old in os.listdir(out):
        os.remove(os.path.join(out, old))
    for name, data in sorted(seeds.items()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(seeds), os.path.relpath(out, ROOT)))


def peer_decoder_seeds():
    server_setup = vec("preface") + vec("handshake") + vec("auth")
    client_setup = vec("handshake_ok")
    requests = ["get_request", "put_request", "remove_request", "range_request", "ping", "pong",
                "repair_tree_request", "repair_apply_request", "put_expiring_request"]
    responses = ["value_response", "tombstone_response", "absent_response", "stored_response",
                 "page_response", "error_response", "ping", "pong", "repair_data_tree",
                 "repair_data_entries", "repair_data_applied", "value_expiring_response"]
    seeds = {
        "server_all": bytes([0]) + server_setup + b"".join(vec(r) for r in requests)
        + vec("error_frame"),
        "server_bytewise": bytes([1 << 1]) + server_setup + b"".join(vec(r) for r in requests),
        "client_all": bytes([1]) + client_setup + b"".join(vec(r) for r in responses)
        + vec("error_frame"),
        "client_chunk3": bytes([1 | (3 << 1)]) + client_setup + b"".join(vec(r) for r in responses),
        "client_refused": bytes([1]) + vec("error_frame"),
        "server_preface_only": bytes([0]) + vec("preface"),
        "server_no_auth": bytes([0]) + vec("preface") + vec("handshake") + vec("get_request"),
        "server_auth_refused": bytes([0]) + vec("preface") + vec("handshake")
        + vec("error_frame"),
        "server_http": bytes([0]) + b"GET /kv?key=a HTTP/1.1\r\nHost: x\r\n\r\n",
        "client_http": bytes([1]) + b"HTTP/1.1 400 Bad Request\r\n\r\n",
    }
    for r in requests:
        seeds["server_" + r] = bytes([0]) + server_setup + vec(r)
    for r in responses:
        seeds["client_" + r] = bytes([1]) + client_setup + vec(r)
    return seeds


def req(method, target, headers=(), body=None, version="HTTP/1.1"):
    h = "%s %s %s\r\nHost: n\r\n" % (method, target, version)
    for k, v in headers:
        h += "%s: %s\r\n" % (k, v)
    if body is not None and not any(k.lower() in ("content-length", "transfer-encoding")
                                    for k, _ in headers):
        h += "Content-Length: %d\r\n" % len(body)
    return h.encode() + b"\r\n" + (body or b"")


def chunked(parts, ext=b"", trailer=b""):
    out = b""
    for p in parts:
        out += b"%x%s\r\n" % (len(p), ext) + p + b"\r\n"
    return out + b"0\r\n" + trailer + b"\r\n"


def http_conn_seeds():
    te = [("Transfer-Encoding", "chunked")]
    streams = {
        "get": req("GET", "/a"),
        "pipelined": req("GET", "/a") + req("PUT", "/b", body=b"xyz") + req("HEAD", "/c"),
        "parked_mixed": req("GET", "/p1") + req("GET", "/p2") + req("PUT", "/p3", body=b"v")
        + req("GET", "/s1") + req("DELETE", "/p4"),
        "stream": req("GET", "/s12") + req("GET", "/sxx"),
        "chunked": req("PUT", "/a", te) + chunked([b"ab", b"cdef"]),
        "chunked_ext_trailer": req("PUT", "/a", te) + chunked([b"ab"], b";x=1", b"T: v\r\n"),
        "chunked_over": req("PUT", "/a", te) + chunked([b"z" * 3000, b"z" * 3000]),
        "expect": req("PUT", "/a", [("Expect", "100-continue"), ("Content-Length", "3")]) + b"abc",
        "expect_over": req("PUT", "/a", [("Expect", "100-continue"), ("Content-Length", "5000")]),
        "http10": req("GET", "/a", version="HTTP/1.0") + req("GET", "/b"),
        "http10_keepalive": req("GET", "/a", [("Connection", "keep-alive")], version="HTTP/1.0")
        + req("GET", "/b", version="HTTP/1.0"),
        "close_then_more": req("GET", "/a", [("Connection", "close")]) + req("GET", "/b"),
        "header_431": req("GET", "/a", [("X-Big", "h" * 2100)]),
        "url_431": req("GET", "/" + "u" * 2100),
        "length_413": req("PUT", "/a", [("Content-Length", "5000")]),
        "garbage": b"\x16\x03\x01 hello\r\n\r\n",
        "bad_then_good": b"GET / HTTP/1.1\r\nHost\r\n\r\n" + req("GET", "/a"),
        "good_then_bad": req("GET", "/a") + b"BREW /pot HTCPCP/1.0\r\n\r\n",
        "preface": b"\x00KVPEER\x01" + b"\x00" * 8,
        "preface_partial": b"\x00KV",
        "internal": req("PUT", "/v0/entity?id=k", [("X-KV-Internal", "1"),
                                                  ("X-KV-Version", "123")], b"v"),
        "double_length": b"PUT /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "length_and_chunked": b"PUT /a HTTP/1.1\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunked([b"abc"]),
    }
    seeds = {}
    for name, data in streams.items():
        seeds[name] = bytes([0]) + data
    for seed in (1, 7, 70, 200):
        seeds["pipelined_split%d" % seed] = bytes([seed]) + streams["pipelined"]
        seeds["chunked_split%d" % seed] = bytes([seed]) + streams["chunked"]
    seeds["many_split3"] = bytes([3]) + b"".join(req("GET", "/p%d" % i) for i in range(40))
    return seeds


def node_app_seeds():
    GET, PUT, DELETE, HEAD, POST = 0, 1, 2, 3, 4

    def line(method, flags, target):
        return bytes([method, flags]) + target + b"\n"

    seeds = {
        "put_get_delete": line(PUT, 5, b"/v0/entity?id=k") + line(GET, 0, b"/v0/entity?id=k")
        + line(DELETE, 0, b"/v0/entity?id=k") + line(GET, 0, b"/v0/entity?id=k"),
        "ack_from": line(PUT, 3, b"/v0/entity?id=a&ack=1&from=1")
        + line(GET, 0, b"/v0/entity?id=a&ack=2&from=1") + line(GET, 0, b"/v0/entity?id=a&from=0")
        + line(GET, 0, b"/v0/entity?id=a&ack=x") + line(GET, 0, b"/v0/entity?ack=1&id="),
        "percent": line(PUT, 1, b"/v0/entity?id=%41%zz") + line(PUT, 1, b"/v0/entity?id=%4")
        + line(GET, 0, b"/v0/entity?id=%00%ff&from=18446744073709551616"),
        "range": line(PUT, 1, b"/v0/entity?id=r1") + line(PUT, 2, b"/v0/entity?id=r2")
        + line(GET, 0, b"/v0/entities?start=r&end=s") + line(GET, 0, b"/v0/entities?start=")
        + line(PUT, 0, b"/v0/entities?start=a") + line(GET, 0, b"/v0/entities?start=%zz"),
        "cluster_range": line(PUT, 1, b"/v0/entity?id=c1") + line(DELETE, 0, b"/v0/entity?id=c2")
        + line(GET, 0, b"/v0/entities?start=c&scope=cluster&limit=1")
        + line(GET, 0, b"/v0/entities?start=c&end=d&scope=cluster&from=1")
        + line(GET, 0, b"/v0/entities?start=c&limit=0") + line(GET, 0, b"/v0/entities?start=c&scope=x")
        + line(GET, 0x40, b"/v0/entities?start=c&max_keys=2&max_bytes=100")
        + line(GET, 0x40, b"/v0/entities?start=c&max_keys=0"),
        "status_metrics": line(GET, 0, b"/v0/status") + line(GET, 0, b"/metrics")
        + line(POST, 0, b"/v0/status") + line(HEAD, 0, b"/metrics") + line(GET, 0, b"/nope"),
        "internal": line(PUT, 0xc2, b"/v0/entity?id=i|1234") + line(GET, 0x40, b"/v0/entity?id=i")
        + line(DELETE, 0xc0, b"/v0/entity?id=i|x") + line(PUT, 0x41, b"/v0/entity?id=i"),
        "close": line(GET, 0x20, b"/v0/status") + line(GET, 0, b"/v0/status"),
        "methods": line(POST, 1, b"/v0/entity?id=m") + line(5, 0, b"/v0/entity?id=m")
        + line(HEAD, 0, b"/v0/entity?id=m"),
        "repair": line(POST, 0, b"/v0/admin/repair?wait=1") + line(GET, 0, b"/v0/admin/repair")
        + line(POST, 0, b"/v0/admin/compact") + line(POST, 0x41, b"/v0/internal/repair/tree")
        + line(POST, 0x43, b"/v0/internal/repair/apply") + line(GET, 0, b"/v0/admin/repair?x"),
    }
    return seeds


def url_seeds():
    return {
        "plain": b"/v0/entity?id=key&ack=2&from=3",
        "escapes": b"/v0/entity?id=%41%62%zz&x",
        "no_query": b"/v0/status",
        "empty_params": b"/v0/entities?&start=&end&&",
        "numbers": b"18446744073709551615",
        "overflow": b"18446744073709551616",
        "truncated_escape": b"/a?id=%4",
        "case": b"Content-LengthcONTENT-lENGTH",
    }


def main():
    write("peer_decoder_fuzz", peer_decoder_seeds())
    write("http_conn_fuzz", http_conn_seeds())
    write("node_app_fuzz", node_app_seeds())
    write("url_fuzz", url_seeds())


if __name__ == "__main__":
    main()
