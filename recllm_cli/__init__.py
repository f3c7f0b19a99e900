"""The ``recllm`` command line: the application layer above the library, the builders, serving and the clients.

It sits outside ``recllm/`` because it composes all of them (``recllm build`` runs ``builders``, ``recllm chat``
uses ``recllm_client``), while the library itself never imports builders, clients or Triton outside ``serving/``.
"""
