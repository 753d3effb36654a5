"""Who may call: the credentials file (access keys and their registries) and AWS Signature
Version 4 verification.

Kept free of imports: :mod:`.credentials` needs only the standard library, :mod:`.sigv4`
needs botocore (the ``server`` extra).
"""
