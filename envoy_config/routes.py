"""The HTTP route map: what Envoy's API listener answers itself, and what it sends to the gRPC servers.

One declaration for the two places that need these facts:

- the Envoy configuration (envoy_config/route_config.py builds the listener's routes from it);
- the OpenAPI generator (tools/generate_openapi.py): which packages it documents (the ones the
  transcoder serves), the document's file name and the path Envoy serves it at, the server URL the
  API's paths are relative to, and the paths no API binding may take because Envoy answers them itself.

Imports nothing of ours (the generator also runs as a plain script).

What the listener serves, in the order its routes are matched:

    GET/HEAD /openapi.json, /docs        the API document and the page that browses it (files)
    GET/HEAD /, /app.js, /app.css        the back office (files of web/dist)
    /<pkg.Service>/<StreamingMethod>     to the gRPC cluster, streaming: no overall timeout
    everything else (prefix /)           to the gRPC cluster, unary: native gRPC as sent, grpc-web
                                         after grpc_web, JSON calls after the transcoder
"""

from __future__ import annotations

# Packages whose services the transcoder serves (every one the descriptor set holds) and the OpenAPI
# document describes.
SERVICE_PACKAGE_PREFIX = "emoney."

# The one upstream cluster: every request the listener does not answer itself reaches it as gRPC.
GRPC_CLUSTER = "emoney_grpc"

# What goes to GRPC_CLUSTER: every path under this prefix that no route above it took. The API's JSON
# paths (/v1/...) are under it, so it is also the OpenAPI document's server URL.
API_PREFIX = "/"

# The API document (written by `make proto` next to the descriptor set) and the page that browses it
# (envoy/docs.html), served by Envoy itself at these paths.
OPENAPI_NAME = "openapi.json"
OPENAPI_ROUTE = "/openapi.json"
DOCS_ROUTE = "/docs"
# The docs page may run its own inline script and call this origin, nothing else.
DOCS_PAGE_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

# The back office (web/, built by `make web` into web/dist/): a single page with hash routes, so these
# few files are all there is. index.html names app.js and app.css with a content hash in the query
# string (which exact-path routes ignore), so those two may be cached for a year while index.html is
# always revalidated.
BACK_OFFICE_FILES: tuple[tuple[str, str, str, str], ...] = (
    # (route path, file in the dist folder, content-type, cache-control)
    ("/", "index.html", "text/html; charset=utf-8", "no-cache"),
    ("/app.js", "app.js", "text/javascript; charset=utf-8", "public, max-age=31536000, immutable"),
    ("/app.css", "app.css", "text/css; charset=utf-8", "public, max-age=31536000, immutable"),
)
# The page runs only its own script and style and talks only to this origin (grpc-web).
BACK_OFFICE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

# Exact paths Envoy answers itself on GET and HEAD (other methods fall through to the API routes). An
# API binding on one of them would never be reached by GET.
ENVOY_SERVED_PATHS: frozenset[str] = frozenset({OPENAPI_ROUTE, DOCS_ROUTE, *(path for path, *_ in BACK_OFFICE_FILES)})
ENVOY_SERVED_METHODS = ("GET", "HEAD")

# Streaming methods outside our descriptor set that the servers also expose (grpc.health's Watch,
# server reflection); the descriptor set's own streaming methods are added to them.
EXTRA_STREAMING_PATHS = (
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
)
