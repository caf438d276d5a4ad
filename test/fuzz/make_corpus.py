#!/usr/bin/env python3
"""Regenerates the seed corpus test/fuzz/corpus/peer_decoder_fuzz/ from proto_spec/vectors/.

Each seed is one fuzz input: a mode byte (bit 0: 0 = server decoder, 1 = client decoder;
bits 1-7: Feed chunk size, 0 = all at once) followed by a byte stream built from the vectors.
Run from anywhere: python3 test/fuzz/make_corpus.py
"""
import os
import re

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
VEC = os.path.join(ROOT, "proto_spec", "vectors")
OUT = os.path.join(ROOT, "test", "fuzz", "corpus", "peer_decoder_fuzz")


def vec(name):
    digits = ""
    with open(os.path.join(VEC, name + ".hex")) as f:
        for line in f:
            digits += re.sub(r"\s", "", line.split("#", 1)[0])
    return bytes.fromhex(digits)


def main():
    os.makedirs(OUT, exist_ok=True)
    for old in os.listdir(OUT):
        os.remove(os.path.join(OUT, old))
    server_setup = vec("preface") + vec("handshake") + vec("auth")
    client_setup = vec("handshake_ok")
    requests = ["get_request", "put_request", "remove_request", "ping", "pong"]
    responses = ["value_response", "tombstone_response", "absent_response", "stored_response",
                 "error_response", "ping", "pong"]
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
    for name, data in sorted(seeds.items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(seeds), os.path.relpath(OUT, ROOT)))


if __name__ == "__main__":
    main()
