"""Operations over HTTP: the daemon's Prometheus metrics, /metrics and /healthz."""
