"""ECR's AWS JSON 1.1 protocol: the operation table, the wire codec, the ``POST /`` handler
and the signed layer-download route.

Kept free of imports so that :mod:`.codec` loads without the ``server`` extra.
"""
