"""facesearch's gRPC contract, generated from protos/facesearch/v1/*.proto.

``facesearch_contract.v1`` holds one ``*_pb2`` module per .proto (messages) and one
``*_pb2_grpc`` per service file (stubs and servicer bases). The proto package stays
``facesearch.v1``: the wire names, e.g. ``/facesearch.v1.Retriever/Search``, are the contract.
"""

__version__ = "0.1.0"
