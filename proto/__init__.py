"""The gRPC contract between agent and coordinator (`ofafleet.v1`)."""
