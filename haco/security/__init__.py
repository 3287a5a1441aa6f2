"""Certificates, API tokens and TLS contexts.

`tokens` and `tls` use the standard library only; `certs` is the one module (besides pysyncobj's
password) that imports `cryptography`, so `haco submit` never loads it. Import the submodules.
"""
