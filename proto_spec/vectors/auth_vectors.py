#!/usr/bin/env python3
"""Independent implementation of the peer authentication MACs (peer-protocol.md, section 11):
prints the vectors of section 11.5 from Python's hashlib.blake2b. test/unit/proto/auth_test.cc
recomputes them with the node's code (libsodium) and must print the same values."""
import hashlib
import struct

SECRET_A = b"kvnode-test-secret-A-0123456789"
SECRET_B = b"kvnode-test-secret-B-0123456789"
CLIENT_NONCE = bytes(range(0x00, 0x20))
SERVER_NONCE = bytes(range(0x20, 0x40))
FINGERPRINT = 0xC1822AE292BD75FB
CLIENT_URL = b"http://127.0.0.1:8081"
SERVER_URL = b"http://127.0.0.1:8082"


def key(secret):
    return hashlib.blake2b(secret, digest_size=32).digest()


def handshake_mac(k, prefix):
    msg = (prefix + CLIENT_NONCE + SERVER_NONCE + struct.pack("<Q", FINGERPRINT)
           + struct.pack("<H", len(CLIENT_URL)) + CLIENT_URL
           + struct.pack("<H", len(SERVER_URL)) + SERVER_URL)
    return hashlib.blake2b(msg, digest_size=32, key=k).hexdigest()


def http_mac(k, method, target, version, t_ms, body):
    msg = (b"kvhttp-v1\n" + method + b"\n" + target + b"\n" + version + b"\n"
           + str(t_ms).encode() + b"\n" + body)
    return hashlib.blake2b(msg, digest_size=32, key=k).hexdigest()


def main():
    for name, secret in (("A", SECRET_A), ("B", SECRET_B)):
        k = key(secret)
        print("key_%s          %s" % (name, k.hex()))
        print("server_proof_%s %s" % (name, handshake_mac(k, b"kvpeer-server-v1")))
        print("client_proof_%s %s" % (name, handshake_mac(k, b"kvpeer-client-v1")))
        print("http_put_%s     %s" % (name, http_mac(k, b"PUT", b"/v0/entity?id=user%3A42",
                                                     b"10964172036854778882", 1700000000000,
                                                     b"hello")))
        print("http_get_%s     %s" % (name, http_mac(k, b"GET", b"/v0/entity?id=user%3A42", b"",
                                                     1700000000000, b"")))


if __name__ == "__main__":
    main()
