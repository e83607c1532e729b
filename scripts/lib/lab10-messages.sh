# Sourced by the benchmark scripts that send lab 10's five messages (2 to
# 393 characters: lengths far enough apart to tell them apart by size).
messages=(
    "ok"
    "running late, start without me"
    "I found the bug: the parser drops the last byte when a read ends exactly on a tag boundary"
    "Notes from today: the proxy strips STARTTLS, the careful client refuses, the server logs the session as secure anyway. Bring your capture of lab 5 tomorrow, we compare the record sizes."
    "Long version, since you asked. Channel binding ties the SCRAM proof to the TLS session: with tls-exporter the value comes from the session's secrets, with tls-server-end-point from the certificate the client saw. A proxy that ends TLS on both sides has two sessions, so the proof made on one fails on the other. Pinning needs the key in advance; binding needs nothing but the server's own TLS."
)
