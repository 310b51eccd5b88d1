"""What tests/ and bench/ share, so neither imports the other: real service processes
(``service_process``), the shared data folder (``shared_data``), TLS material (``tls``), the
PyTriton stand-in for a Triton server (``pytriton_server``) and LFW verification
(``face_verification``). Development only: no wheel ships it.
"""
