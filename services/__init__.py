"""tasktide server: the scheduler, worker-registry and results gRPC services (import as tasktide_services)."""
