"""Operations apart from the call path: the embedded nats-server, clusters, processes, permissions, set-up and overviews."""
